// swift-tools-version:6.0
// The Swift build of liborchestra. CMakeLists.txt builds the same targets from the same
// sources for the C world (liborchestra.so with a static Swift runtime, header, pkg-config).
import PackageDescription

let package = Package(
    name: "orchestra",
    products: [
        .library(name: "orchestra", type: .dynamic, targets: ["Orchestra"]),
        .library(name: "OrchestraCore", targets: ["OrchestraCore"]),
        .library(name: "OrchestraNet", targets: ["OrchestraNet"]),
        .library(name: "OrchestraWire", targets: ["OrchestraWire"]),
        .library(name: "OrchestraAgent", targets: ["OrchestraAgent"]),
        .library(name: "OrchestraHub", targets: ["OrchestraHub"]),
        .executable(name: "orchestra-hub", targets: ["orchestra-hub"]),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CSSL", path: "Sources/CSSL"),
        .systemLibrary(name: "COrchestra", path: "Sources/COrchestra"),
        .systemLibrary(name: "CUV", path: "Sources/CUV", pkgConfig: "libuv"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        // libpq (Debian libpq-dev): the hub's PostgreSQL journal, driven from the libuv loop.
        .systemLibrary(name: "CPQ", path: "Sources/CPQ", pkgConfig: "libpq"),
        .target(
            name: "OrchestraCore",
            dependencies: ["CZlib", "CSSL"],
            path: "Sources/OrchestraCore"
        ),
        .target(
            name: "OrchestraNet",
            dependencies: ["OrchestraCore", "CSSL", "CZlib", "CUV"],
            path: "Sources/OrchestraNet"
        ),
        // The vocabulary the hub and the agent SDK share: event names, error codes, the
        // registration signature (HMAC-SHA256) and the protocol version.
        .target(
            name: "OrchestraWire",
            dependencies: ["OrchestraCore", "CSSL"],
            path: "Sources/OrchestraWire"
        ),
        // The agent SDK: the agent side of the hub protocol over a reconnecting client.
        .target(
            name: "OrchestraAgent",
            dependencies: ["OrchestraWire", "OrchestraNet", "OrchestraCore", "CSSL"],
            path: "Sources/OrchestraAgent"
        ),
        .target(
            name: "OrchestraHub",
            dependencies: ["OrchestraWire", "OrchestraCore", "OrchestraNet", "CSSL", "CSQLite", "CUV", "CPQ"],
            path: "Sources/OrchestraHub"
        ),
        .executableTarget(
            name: "orchestra-hub",
            dependencies: ["OrchestraHub", "OrchestraNet", "OrchestraCore"],
            path: "Sources/orchestra-hub"
        ),
        .target(
            name: "Orchestra",
            dependencies: ["OrchestraCore", "OrchestraNet", "OrchestraAgent", "COrchestra"],
            path: "Sources/Orchestra"
        ),
        // What the test suites share: a bounded wait for a condition (`eventually`), a pthread.
        .target(
            name: "OrchestraTestSupport",
            path: "Tests/OrchestraTestSupport"
        ),
        .testTarget(
            name: "OrchestraCoreTests",
            dependencies: ["OrchestraCore", "OrchestraTestSupport"],
            path: "Tests/OrchestraCoreTests"
        ),
        .testTarget(
            name: "OrchestraHubTests",
            dependencies: ["OrchestraHub", "OrchestraNet", "OrchestraCore", "OrchestraTestSupport"],
            path: "Tests/OrchestraHubTests"
        ),
        .testTarget(
            name: "OrchestraAgentTests",
            dependencies: ["OrchestraAgent", "OrchestraWire", "OrchestraNet", "OrchestraCore", "OrchestraTestSupport"],
            path: "Tests/OrchestraAgentTests"
        ),
        .testTarget(
            name: "OrchestraNetTests",
            dependencies: ["OrchestraNet", "OrchestraCore", "OrchestraTestSupport"],
            path: "Tests/OrchestraNetTests"
        ),
    ]
)
