# Empty dependencies file for foundation.
# This may be replaced when dependencies are built.
