"""Domain logic of the ec2ops-snapshot workflow, one module per step."""
