# Empty dependencies file for test_segment.
# This may be replaced when dependencies are built.
