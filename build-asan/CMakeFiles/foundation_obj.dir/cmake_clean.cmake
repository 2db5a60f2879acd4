file(REMOVE_RECURSE
  "CMakeFiles/foundation_obj.dir/lib/error.c.o"
  "CMakeFiles/foundation_obj.dir/lib/error.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/alloc.c.o"
  "CMakeFiles/foundation_obj.dir/shm/alloc.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/check.c.o"
  "CMakeFiles/foundation_obj.dir/shm/check.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/ht.c.o"
  "CMakeFiles/foundation_obj.dir/shm/ht.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/proc.c.o"
  "CMakeFiles/foundation_obj.dir/shm/proc.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/rcu.c.o"
  "CMakeFiles/foundation_obj.dir/shm/rcu.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/reclaim.c.o"
  "CMakeFiles/foundation_obj.dir/shm/reclaim.c.o.d"
  "CMakeFiles/foundation_obj.dir/shm/segment.c.o"
  "CMakeFiles/foundation_obj.dir/shm/segment.c.o.d"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/foundation_obj.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
