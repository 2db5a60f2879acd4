# Empty dependencies file for test_corrupt.
# This may be replaced when dependencies are built.
