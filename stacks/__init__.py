"""The ec2ops CDK stack and its constructs."""
