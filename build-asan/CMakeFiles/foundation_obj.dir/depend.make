# Empty dependencies file for foundation_obj.
# This may be replaced when dependencies are built.
