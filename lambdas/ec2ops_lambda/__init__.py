"""ec2ops Lambda code: thin handlers over domain logic over small AWS access modules."""
