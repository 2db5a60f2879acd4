
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/lib/error.c" "CMakeFiles/foundation_obj.dir/lib/error.c.o" "gcc" "CMakeFiles/foundation_obj.dir/lib/error.c.o.d"
  "/work/main/shm/alloc.c" "CMakeFiles/foundation_obj.dir/shm/alloc.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/alloc.c.o.d"
  "/work/main/shm/check.c" "CMakeFiles/foundation_obj.dir/shm/check.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/check.c.o.d"
  "/work/main/shm/ht.c" "CMakeFiles/foundation_obj.dir/shm/ht.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/ht.c.o.d"
  "/work/main/shm/proc.c" "CMakeFiles/foundation_obj.dir/shm/proc.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/proc.c.o.d"
  "/work/main/shm/rcu.c" "CMakeFiles/foundation_obj.dir/shm/rcu.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/rcu.c.o.d"
  "/work/main/shm/reclaim.c" "CMakeFiles/foundation_obj.dir/shm/reclaim.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/reclaim.c.o.d"
  "/work/main/shm/segment.c" "CMakeFiles/foundation_obj.dir/shm/segment.c.o" "gcc" "CMakeFiles/foundation_obj.dir/shm/segment.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
