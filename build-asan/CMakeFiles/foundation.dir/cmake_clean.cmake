file(REMOVE_RECURSE
  "libfoundation.pdb"
  "libfoundation.so"
  "libfoundation.so.0"
  "libfoundation.so.0.1.0"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/foundation.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
