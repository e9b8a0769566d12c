"""Expands template.yaml as SAM does on deploy (the AWS::Serverless transform, offline, with SAM's
bundled map of AWS managed policies) and writes the CloudFormation JSON: what the IaC scanner
(checkov, in `make lint-app`) and tests/unit/test_template_security.py read, so that they see the
roles, permissions and event sources SAM generates, not only what the template spells out.

    python setup/expand_template.py .aws-sam/expanded-template.json [Parameter=Value ...]

Parameters default to a deployment that uses every database slot with a writer (so that every
conditional resource exists)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
EVERY_SLOT = {
    **{f"Database{n}Name": f"db{n}" for n in range(1, 5)},
    **{
        f"Database{n}SecretArn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:tablesync/db{n}"
        for n in range(1, 5)
    },
    **{
        f"Database{n}WriterSecretArn": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:tablesync/db{n}-writer"
        for n in range(1, 5)
    },
    **{f"Database{n}WritableTables": "orders:insert+update" for n in range(1, 5)},
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as {"Fn::X": ...} data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


class _BundledPolicies:
    """SAM's own map of AWS managed policy names to ARNs, instead of asking IAM for it."""

    def load(self) -> dict[str, str]:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        return get_bundled_managed_policy_map("aws") or {}


def expand(parameters: dict[str, str] | None = None) -> dict[str, Any]:
    import os

    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator asks boto3 for a region

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)
    # As `sam package` leaves it: code in S3, the state machine's definition inline.
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for field in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(field), str):
                properties[field] = f"s3://tablesync-artifacts/{name}.zip"
        if isinstance(properties.get("DefinitionUri"), str):
            properties["Definition"] = json.loads((ROOT / properties.pop("DefinitionUri")).read_text())
    values = {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, **EVERY_SLOT, **(parameters or {})}
    expanded: dict[str, Any] = transform(template, values, _BundledPolicies())  # type: ignore[arg-type]
    return expanded


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    parameters = dict(arg.split("=", 1) for arg in argv[1:])
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expand(parameters), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
