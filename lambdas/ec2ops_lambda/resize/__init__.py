"""Domain logic of the ec2ops-resize workflow, one module per step (docs/design/resize-workflow.md)."""
