"""Domain logic of the ec2ops-spot-failover workflow, one module per step."""
