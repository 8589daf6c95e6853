"""Runs parliament (IAM policy linter) over IAM policy files and fails on what orgwatch's
generated policies must never have: any finding of severity HIGH or CRITICAL, and every
RESOURCE_MISMATCH, UNKNOWN_ACTION, UNKNOWN_PREFIX, UNKNOWN_CONDITION_FOR_ACTION or
MISMATCHED_TYPE finding (an action given a resource or condition key of a type the Service
Authorization Reference does not list for it).

Usage: python policy-check.py FILE.json [FILE.json ...]
Prints one JSON line per finding; exit 0 when none fails, 1 otherwise, 2 on bad input.

parliament 1.6.x does not know the reference's multivalued condition key types
("ArrayOfARN" and the like, e.g. events:TargetArn of events:PutTargets) and raises instead
of checking them; the shim below checks each element against the element type.
"""
import json
import os
import sys

import parliament
import parliament.statement as statement

# The community auditors (privilege escalation, credentials exposure, ...) carry their
# severities in a config of their own, as parliament's CLI loads it.
parliament.override_config(
    os.path.join(
        os.path.dirname(parliament.__file__), "community_auditors", "config_override.yaml"
    )
)

FAILING_ISSUES = {
    "RESOURCE_MISMATCH",
    "UNKNOWN_ACTION",
    "UNKNOWN_PREFIX",
    "UNKNOWN_CONDITION_FOR_ACTION",
    "MISMATCHED_TYPE",
}
FAILING_SEVERITIES = {"HIGH", "CRITICAL"}

_translate = statement.translate_documentation_types


def _translate_array_types(name):
    if isinstance(name, str) and name.startswith("ArrayOf"):
        name = name[len("ArrayOf"):]
    return _translate(name)


statement.translate_documentation_types = _translate_array_types


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            json.loads(text)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read a JSON policy: {e}", file=sys.stderr)
            return 2
        policy = parliament.analyze_policy_string(
            text, include_community_auditors=True
        )
        for finding in policy.findings:
            parliament.enhance_finding(finding)
            severity = finding.severity
            fails = severity in FAILING_SEVERITIES or finding.issue in FAILING_ISSUES
            failed |= fails
            print(
                json.dumps(
                    {
                        "file": path,
                        "issue": finding.issue,
                        "severity": severity,
                        "fails": fails,
                        "detail": str(finding.detail),
                        "location": str(finding.location),
                    }
                )
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
