# Compares the dynamic symbols liborchestra.so defines with abi/exported-symbols.txt.
# -DUPDATE=ON rewrites the baseline (an intended ABI change).
execute_process(COMMAND nm -D --defined-only ${LIB} OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${nm_out}")
set(symbols "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^.* ([^ ]+)$" "\\1" sym "${line}")
  if(NOT sym MATCHES "^(_init|_fini)$")
    list(APPEND symbols "${sym}")
  endif()
endforeach()
list(SORT symbols)
list(JOIN symbols "\n" current)
set(current "${current}\n")
if(UPDATE)
  file(WRITE ${BASELINE} "${current}")
  message(STATUS "ABI baseline updated: ${BASELINE}")
  return()
endif()
if(EXISTS ${BASELINE})
  file(READ ${BASELINE} baseline)
else()
  set(baseline "")
endif()
if(NOT current STREQUAL baseline)
  file(WRITE ${LIB}.exports.txt "${current}")
  message(FATAL_ERROR
    "liborchestra.so exports differ from the committed baseline abi/exported-symbols.txt.\n"
    "Compare: diff ${BASELINE} ${LIB}.exports.txt\n"
    "If the change is intended (a new or removed orc_* function), update the baseline on purpose:\n"
    "  cmake --build <build-dir> --target update-abi-baseline\n"
    "and commit abi/exported-symbols.txt with the header change.")
endif()
