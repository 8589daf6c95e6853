#!/usr/bin/env python3
"""Regenerates what infra/ copies from the code: infra/iam/*.json and the inline policies of
infra/cloudformation/member-role.yaml (MemberRole, AgentReaderRole, CentralPolicy), from
`hub policy` with infra/examples/hub.toml. The tests in tests/tests/e2e/infra.rs fail until
both agree. Usage: scripts/lib/regen-infra.py [path/to/hub]  (default target/debug/hub)."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HUB = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/debug/hub")


def printed(who):
    return subprocess.run(
        [HUB, "--config", "infra/examples/hub.toml", "policy", "--for", who],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout


def policy(who):
    return json.loads(printed(who))


def in_stack_partition(value):
    """`arn:aws:` strings become `Fn::Sub` of the stack's own partition."""
    if isinstance(value, dict):
        return {k: in_stack_partition(v) for k, v in value.items()}
    if isinstance(value, list):
        return [in_stack_partition(v) for v in value]
    if isinstance(value, str) and value.startswith("arn:aws:"):
        return {"Fn::Sub": "arn:${AWS::Partition}:" + value[len("arn:aws:"):]}
    return value


def splice(text, marker, document):
    """Replaces the block under the first `PolicyDocument:` after `marker`."""
    lines = text.split("\n")
    start = next(i for i, l in enumerate(lines) if marker in l)
    doc = next(i for i in range(start, len(lines)) if lines[i].strip() == "PolicyDocument:")
    indent = len(lines[doc]) - len(lines[doc].lstrip())
    end = doc + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
    ):
        end += 1
    body = yaml.safe_dump(in_stack_partition(document), default_flow_style=False, sort_keys=True)
    block = [" " * (indent + 2) + l for l in body.rstrip("\n").split("\n")]
    return "\n".join(lines[: doc + 1] + block + lines[end:])


for who in ["hub", "agent", "member", "agent-member", "central"]:
    (ROOT / f"infra/iam/{who}.json").write_text(printed(who))
template = ROOT / "infra/cloudformation/member-role.yaml"
text = template.read_text()
for marker, who in [
    ("PolicyName: orgwatch-member", "member"),
    ("AgentReaderRole:", "agent-member"),
    ("CentralPolicy:", "central"),
]:
    text = splice(text, marker, policy(who))
template.write_text(text)
