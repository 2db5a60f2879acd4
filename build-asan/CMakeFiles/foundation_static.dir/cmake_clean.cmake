file(REMOVE_RECURSE
  "libfoundation.a"
  "libfoundation.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/foundation_static.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
