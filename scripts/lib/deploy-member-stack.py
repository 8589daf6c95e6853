"""Deploys infra/cloudformation/member-role.yaml into accounts of an emulated organisation,
as the StackSet (members) and the plain stack (management account) a real organisation
would run, so that tests exercise the real template. Test bed only: it refuses any
endpoint that is not on loopback.

Usage: python deploy-member-stack.py ENDPOINT REGION HUB_ACCOUNT CENTRAL_ACCOUNT ACCOUNT...
(an account that has the stack gets it replaced, as a StackSet update would update it)
Credentials: the management account's, from the environment (AWS_ACCESS_KEY_ID, ...);
members are reached through OrganizationAccountAccessRole, as StackSets do.
"""
import ast
import json
import os
import sys
import urllib.parse

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "infra", "cloudformation", "member-role.yaml")
STACK = "orgwatch-member"


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, region, hub, central, *accounts = argv
    host = urllib.parse.urlparse(endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing a non-loopback endpoint: {endpoint}", file=sys.stderr)
        return 2
    with open(TEMPLATE, encoding="utf-8") as f:
        body = f.read()
    base = boto3.session.Session(region_name=region)
    me = base.client("sts", endpoint_url=endpoint).get_caller_identity()["Account"]
    for account in accounts:
        if account == me:
            session = base
        else:
            creds = base.client("sts", endpoint_url=endpoint).assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                RoleSessionName="stackset",
            )["Credentials"]
            session = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=region,
            )
        cfn = session.client("cloudformation", endpoint_url=endpoint)
        args = dict(
            StackName=STACK,
            TemplateBody=body,
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Parameters=[
                {"ParameterKey": "HubAccountId", "ParameterValue": hub},
                {"ParameterKey": "CentralAccountId", "ParameterValue": central},
            ],
        )
        existing = [
            s for s in cfn.list_stacks()["StackSummaries"]
            if s["StackName"] == STACK and s["StackStatus"] != "DELETE_COMPLETE"
        ]
        if existing:
            # Emulator defect (moto 5.2.5): UpdateStack leaves a role's inline policies as
            # they were; AWS replaces them. Replace the stack instead.
            cfn.delete_stack(StackName=STACK)
        cfn.create_stack(**args)
        status = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
        if status != "CREATE_COMPLETE":
            print(f"{account}: stack {STACK} is {status}", file=sys.stderr)
            return 1
        store_policies_as_json(session.client("iam", endpoint_url=endpoint), cfn)
    return 0


def store_policies_as_json(iam, cfn):
    """Emulator defect (moto 5.2.5): a role's inline policies created through
    CloudFormation are stored as Python reprs, not JSON, so GetRolePolicy answers
    "{'Version': ...}" where AWS answers URL-encoded JSON. Write each one back as the JSON
    the template gave, as AWS would have stored it."""
    resources = cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    for r in resources:
        if r.get("ResourceType") != "AWS::IAM::Role":
            continue
        role = r["PhysicalResourceId"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(doc, str):
                try:
                    doc = json.loads(doc)
                except ValueError:
                    doc = ast.literal_eval(doc)
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
