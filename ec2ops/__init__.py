"""ec2ops: the operator CLI and ec2ops.local, the embedded AWS used by the demo and the tests."""
