"""The ec2ops-training-run workflow's domain logic (docs/training-runs.md)."""
