# Empty dependencies file for test_multiproc.
# This may be replaced when dependencies are built.
