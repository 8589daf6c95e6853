#!/usr/bin/env python3
"""Validates `hub status --output ocsf` (a JSON array, from stdin or a file) against
py-ocsf-models' ComplianceFinding, the OCSF models Prowler writes its output with.

pydantic ignores keys a model does not declare, so each finding is also walked against
the models: a key no model declares (a misspelt `finding_info`, say) is an error too.
Exit 0 when every finding is valid; otherwise each problem on stderr and exit 1.
"""
import json
import sys
import typing

from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
from py_ocsf_models.objects.cloud import Cloud
from pydantic import BaseModel, TypeAdapter, ValidationError

# Attributes of the OCSF 1.5.0 schema (ocsf/ocsf-schema) that py-ocsf-models 0.10.0 leaves
# out of these models, with the type they must have:
# - `cloud`: the cloud profile (profiles/cloud.json), which base_event includes for every
#   class; the models give it to DetectionFinding only. Findings that carry it name the
#   profile in metadata.profiles.
# - `compliance.status`: objects/compliance.json ("recommended"), the caption of status_id.
SCHEMA_ONLY = {
    ("ComplianceFinding", "cloud"): Cloud,
    ("Compliance", "status"): str,
}


def models_in(annotation):
    """The pydantic models an annotation (Optional[List[X]], X, ...) can hold."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in typing.get_args(annotation):
        out.extend(models_in(arg))
    return out


def unknown_keys(value, model, path):
    problems = []
    if not isinstance(value, dict):
        return problems
    fields = model.model_fields
    for key, item in value.items():
        extra = SCHEMA_ONLY.get((model.__name__, key))
        if extra is not None:
            try:
                TypeAdapter(extra).validate_python(item)
            except ValidationError as e:
                problems.append(f"{path}.{key}: {e}")
            if isinstance(extra, type) and issubclass(extra, BaseModel):
                problems.extend(unknown_keys(item, extra, f"{path}.{key}"))
            continue
        if key not in fields:
            problems.append(f"{path}.{key}: no such attribute in {model.__name__}")
            continue
        inner = models_in(fields[key].annotation)
        if not inner:
            continue
        items = item if isinstance(item, list) else [item]
        for i, element in enumerate(items):
            where = f"{path}.{key}[{i}]" if isinstance(item, list) else f"{path}.{key}"
            problems.extend(unknown_keys(element, inner[0], where))
    return problems


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    findings = json.loads(text)
    if not isinstance(findings, list) or not findings:
        print("expected a non-empty JSON array of findings", file=sys.stderr)
        return 1
    problems = []
    for i, finding in enumerate(findings):
        try:
            ComplianceFinding.model_validate(finding)
        except ValidationError as e:
            problems.append(f"finding[{i}]: {e}")
        problems.extend(unknown_keys(finding, ComplianceFinding, f"finding[{i}]"))
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(findings)} findings valid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
