# Every test suite runs under ctest: C ABI tests (also with ASan+UBSan), Swift tests (also
# under ThreadSanitizer), Python binding tests, install/consumer tests.
file(GLOB ORC_C_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/Tests/c/test_*.c)
set(ORC_CORPUS ${CMAKE_SOURCE_DIR}/Tests/fuzz/corpus)

foreach(src IN LISTS ORC_C_TESTS)
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/Tests/c)
  target_link_libraries(${name} PRIVATE orchestra Threads::Threads)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Werror)
  set_target_properties(${name} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
  add_test(NAME c.${name} COMMAND ${name} ${ORC_CORPUS}/json ${ORC_CORPUS}/msgpack)
  if(ORC_SANITIZE_TESTS)
    add_executable(${name}_asan ${src})
    target_include_directories(${name}_asan PRIVATE ${CMAKE_SOURCE_DIR}/Tests/c)
    target_link_libraries(${name}_asan PRIVATE orchestra Threads::Threads)
    target_compile_options(${name}_asan PRIVATE -Wall -Wextra -Werror -g -fno-omit-frame-pointer
      -fsanitize=address,undefined -fno-sanitize-recover=all)
    target_link_options(${name}_asan PRIVATE -fsanitize=address,undefined)
    set_target_properties(${name}_asan PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
    add_test(NAME c.${name}.asan COMMAND ${name}_asan ${ORC_CORPUS}/json ${ORC_CORPUS}/msgpack)
    set_tests_properties(c.${name}.asan PROPERTIES ENVIRONMENT
      "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/Tests/c/lsan.supp:print_suppressions=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endif()
endforeach()

# The agent test's hub peer checks registration signatures with OpenSSL's HMAC.
foreach(t test_agent test_agent_asan)
  if(TARGET ${t})
    target_link_libraries(${t} PRIVATE OpenSSL::Crypto m)
  endif()
endforeach()

# The runtime's shutdown closes every libuv handle and frees what it allocated: valgrind finds
# no leak and no error in the runtime test.
find_program(VALGRIND_EXE valgrind)
if(VALGRIND_EXE)
  add_test(NAME c.test_runtime.valgrind COMMAND ${VALGRIND_EXE} --quiet --error-exitcode=1
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    $<TARGET_FILE:test_runtime>)
  # Servers, clients and connections too: every handle closed, every buffer freed.
  add_test(NAME c.test_ws.valgrind COMMAND ${VALGRIND_EXE} --quiet --error-exitcode=1
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    $<TARGET_FILE:test_ws>)
  # Agents too: the agent, its client, events and timers.
  add_test(NAME c.test_agent.valgrind COMMAND ${VALGRIND_EXE} --quiet --error-exitcode=1
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    $<TARGET_FILE:test_agent>)
endif()

# The demo (the main job) runs to the end and prints well-formed metrics.
add_test(NAME c.demo COMMAND ${CMAKE_SOURCE_DIR}/Tests/c/check_demo.sh $<TARGET_FILE:orchestra-demo>)

# The header compiles cleanly as strict C11 and as C++17.
add_test(NAME header.c11 COMMAND ${CMAKE_C_COMPILER} -std=c11 -Wall -Wextra -Werror -pedantic
  -fsyntax-only -x c ${CMAKE_SOURCE_DIR}/include/orchestra.h)
find_program(ORC_CXX NAMES c++ g++ clang++)
if(ORC_CXX)
  add_test(NAME header.cxx17 COMMAND ${ORC_CXX} -std=c++17 -Wall -Wextra -Werror -pedantic
    -fsyntax-only -x c++ ${CMAKE_SOURCE_DIR}/include/orchestra.h)
endif()

# One error table, one copy of the header's enums: the tables the bindings load, the Swift
# error type, the Python exceptions and docs/abi.md against include/orchestra.h.
find_program(ORC_PYTHON3 python3)
if(ORC_PYTHON3)
  add_test(NAME abi.consistency COMMAND ${ORC_PYTHON3} ${CMAKE_SOURCE_DIR}/scripts/abi-tables --check)
endif()

# Installed-package consumers: pkg-config and find_package(orchestra), from a fresh prefix.
add_test(NAME install.consumers
  COMMAND ${CMAKE_SOURCE_DIR}/Tests/install/run.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})

# The library loads with no Swift toolchain on the library path and exports only orc_*.
add_test(NAME library.selfcontained
  COMMAND ${CMAKE_SOURCE_DIR}/Tests/install/check_library.sh $<TARGET_FILE:orchestra>)

if(ORC_SWIFT_TESTS)
  find_program(SWIFT_EXE swift REQUIRED)
  add_test(NAME swift.tests
    COMMAND ${SWIFT_EXE} test --scratch-path ${CMAKE_BINARY_DIR}/swiftpm
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  add_test(NAME swift.tests.tsan
    COMMAND ${SWIFT_EXE} test --sanitize=thread --scratch-path ${CMAKE_BINARY_DIR}/swiftpm-tsan
            --filter "Queue|Router|Metrics|Runtime|PayloadForm|Transport|AgentSDK|HubAgent|Postgres"
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(swift.tests swift.tests.tsan PROPERTIES TIMEOUT 1800 RUN_SERIAL ON)
  # The PostgreSQL client's suite runs against ORC_TEST_PG_URL (scripts/test exports it) and
  # skips without it; CI, which always has it, is told by CI=true to fail instead.
endif()

if(ORC_PYTHON_TESTS)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  add_test(NAME python.tests
    COMMAND ${Python3_EXECUTABLE} -m pytest -q ${CMAKE_SOURCE_DIR}/bindings/python/tests
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(python.tests PROPERTIES
    ENVIRONMENT "ORCHESTRA_LIBRARY=$<TARGET_FILE:orchestra>;PYTHONPATH=${CMAKE_SOURCE_DIR}/bindings/python"
    TIMEOUT 900)
  # The Python package as a user installs it (Tests/install/python_package.sh): pip wheel and
  # pip install ./bindings/python from a copy of the source tree, each into a fresh venv, then
  # import orchestra with no environment variables: the library inside the package is loaded.
  # The build hook reuses this build tree (ORC_BUILD_DIR) instead of compiling the library again.
  add_test(NAME python.package
    COMMAND ${CMAKE_SOURCE_DIR}/Tests/install/python_package.sh ${Python3_EXECUTABLE}
            ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
  set_tests_properties(python.package PROPERTIES TIMEOUT 600)
  # Our echo server and client against python websockets and node ws (Debian node-ws).
  add_test(NAME interop.tests
    COMMAND ${Python3_EXECUTABLE} -m pytest -q ${CMAKE_SOURCE_DIR}/Tests/interop
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/Tests/interop)
  set_tests_properties(interop.tests PROPERTIES
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR}" TIMEOUT 600)

  # The hub: the orchestra-hub executable with agents in C, Python and Node (the examples) and
  # web clients on python websockets (Tests/hub).
  add_test(NAME hub.acceptance
    COMMAND ${Python3_EXECUTABLE} -m pytest -q ${CMAKE_SOURCE_DIR}/Tests/hub
            --ignore=${CMAKE_SOURCE_DIR}/Tests/hub/test_cluster.py
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/Tests/hub)
  set_tests_properties(hub.acceptance PROPERTIES
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR}" TIMEOUT 1200)
  # The same suite with every hub on PostgreSQL (ORC_TEST_PG_URL; each test in a schema of its
  # own): skipped without a server, a failure without one when CI=true.
  add_test(NAME hub.acceptance.postgres
    COMMAND ${CMAKE_SOURCE_DIR}/Tests/pg/with_server.sh ${Python3_EXECUTABLE} -m pytest -q ${CMAKE_SOURCE_DIR}/Tests/hub
            --ignore=${CMAKE_SOURCE_DIR}/Tests/hub/test_cluster.py)
  set_tests_properties(hub.acceptance.postgres PROPERTIES
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR};ORC_TEST_JOURNAL=postgres" TIMEOUT 1200
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/Tests/hub SKIP_RETURN_CODE 77)
  # Three hubs on one PostgreSQL (Tests/hub/test_cluster.py): 900 tasks across hubs, kill -9
  # of a hub and a 5 s database outage under load, trust across hubs.
  add_test(NAME hub.cluster
    COMMAND ${CMAKE_SOURCE_DIR}/Tests/pg/with_server.sh ${Python3_EXECUTABLE} -m pytest -q
            ${CMAKE_SOURCE_DIR}/Tests/hub/test_cluster.py)
  set_tests_properties(hub.cluster PROPERTIES
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR}" TIMEOUT 900
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/Tests/hub SKIP_RETURN_CODE 77)

  # scripts/cluster, as README.md shows it: PostgreSQL, three hubs, a task across two of them.
  add_test(NAME scripts.cluster COMMAND ${CMAKE_SOURCE_DIR}/scripts/cluster)
  set_tests_properties(scripts.cluster PROPERTIES TIMEOUT 300
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR};ORC_CLUSTER_PORT=17421;ORC_CLUSTER_DIR=${CMAKE_BINARY_DIR}/test-output/cluster")

  # The dashboard in headless Chromium (Debian chromium + chromium-driver, selenium) against
  # the real hub and real agents; screenshots of every view in test-output/web of the build.
  add_test(NAME web.browser
    COMMAND ${Python3_EXECUTABLE} -m pytest -q ${CMAKE_SOURCE_DIR}/Tests/web
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/Tests/web)
  set_tests_properties(web.browser PROPERTIES
    ENVIRONMENT "ORC_BUILD_DIR=${CMAKE_BINARY_DIR};ORC_TEST_OUTPUT=${CMAKE_BINARY_DIR}/test-output/web" TIMEOUT 900)

  # The WebSocket conformance suite (Tests/conformance, Autobahn case groups) judges a server or
  # a client started from a command: {port}, {host} and {max_size} are filled in for a server,
  # {url} for a client. PEER names a reference peer whose documented deviations
  # (Tests/conformance/deviations.py) run as strict xfails; empty for our own examples.
  function(orc_conformance_test name role peer cmd)
    set(args -m pytest -q ${CMAKE_SOURCE_DIR}/Tests/conformance --${role}-cmd=${cmd})
    if(peer)
      list(APPEND args --peer=${peer})
    endif()
    add_test(NAME conformance.${role}.${name} COMMAND ${Python3_EXECUTABLE} ${args}
      WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(conformance.${role}.${name} PROPERTIES TIMEOUT 600)
  endfunction()
  set(ORC_PEERS ${CMAKE_SOURCE_DIR}/Tests/conformance/peers)
  find_program(ORC_NODE node)
  if(ORC_NODE)
    orc_conformance_test(node_ws server node_ws
      "${ORC_NODE} ${ORC_PEERS}/ws_echo_server.js --port {port} --max-size {max_size} --deflate")
    orc_conformance_test(node_ws client node_ws "${ORC_NODE} ${ORC_PEERS}/ws_echo_client.js {url}")
  endif()
  orc_conformance_test(websockets server websockets
    "${Python3_EXECUTABLE} ${ORC_PEERS}/websockets_echo_server.py --port {port} --max-size {max_size} --deflate")
  orc_conformance_test(websockets client websockets
    "${Python3_EXECUTABLE} ${ORC_PEERS}/websockets_echo_client.py {url}")
  # Ours, with nothing excused: the C examples, compressing every message when deflate is on.
  orc_conformance_test(orchestra server ""
    "$<TARGET_FILE:echo-server> --port {port} --host {host} --max-size {max_size} --deflate --compress-threshold 0")
  orc_conformance_test(orchestra client ""
    "$<TARGET_FILE:echo-client> {url} --deflate --compress-threshold 0")
endif()

# The Node binding's tests (node:test): the addon built above, loaded through
# bindings/node/lib/index.js; node's runner prints its summary.
if(ORC_NODE_ADDON)
  find_program(NODE_EXE node)
  if(NODE_EXE)
    add_test(NAME node.tests
      COMMAND ${NODE_EXE} --expose-gc --test ${CMAKE_SOURCE_DIR}/bindings/node/test/
      WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(node.tests PROPERTIES
      ENVIRONMENT "ORCHESTRA_NODE_ADDON=$<TARGET_FILE:orchestra_node>"
      TIMEOUT 600)
  endif()
  # The installed Node package copied elsewhere works with no ORCHESTRA_NODE_ADDON: the addon
  # and the library inside the package folder (Tests/install/node_package.sh).
  if(NODE_EXE)
    add_test(NAME node.package
      COMMAND ${CMAKE_SOURCE_DIR}/Tests/install/node_package.sh ${NODE_EXE} ${CMAKE_BINARY_DIR})
  endif()
  # index.d.ts against a sample of the API (compiled, not run) when TypeScript is installed
  # (Debian: node-typescript).
  find_program(TSC_EXE tsc)
  if(TSC_EXE)
    add_test(NAME node.types COMMAND ${TSC_EXE} -p ${CMAKE_SOURCE_DIR}/bindings/node/types-test)
  endif()
endif()

# libFuzzer targets for the JSON and MessagePack decoders, the WebSocket frame decoder, the
# HTTP/1.1 head parsers with the handshake, and permessage-deflate inflation (a separate
# instrumented build).
option(ORC_FUZZ_TESTS "Build and run the libFuzzer targets under ctest" ON)
find_program(ORC_CLANG clang)
if(ORC_FUZZ_TESTS AND ORC_CLANG)
  set(ORC_FUZZ_DIR ${CMAKE_BINARY_DIR}/fuzz)
  add_test(NAME fuzz.build COMMAND ${CMAKE_SOURCE_DIR}/Tests/fuzz/build.sh ${CMAKE_SOURCE_DIR} ${ORC_FUZZ_DIR})
  set_tests_properties(fuzz.build PROPERTIES FIXTURES_SETUP fuzz TIMEOUT 1200)
  foreach(fmt json msgpack ws_frames http_head inflate)
    add_test(NAME fuzz.${fmt}
      COMMAND ${CMAKE_SOURCE_DIR}/Tests/fuzz/run.sh ${ORC_FUZZ_DIR}/fuzz_${fmt}
              ${CMAKE_SOURCE_DIR}/Tests/fuzz/corpus/${fmt} ${ORC_FUZZ_DIR}/work-${fmt})
    set_tests_properties(fuzz.${fmt} PROPERTIES FIXTURES_REQUIRED fuzz TIMEOUT 600)
  endforeach()
endif()
