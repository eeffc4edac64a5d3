import Glibc
import OrchestraCore
import OrchestraNet

/// The dashboard's files (`web/`), read into memory when the hub starts: `/` is `index.html`,
/// `/ui/<path>` any other file under the root. Only regular files found under the root at start
/// are served (no directory listing, no path outside it, no dot files), with a content type by
/// extension and headers that keep the page from running anything it did not ship: a
/// Content-Security-Policy allowing scripts and styles from the hub only, `nosniff`, no framing.
struct StaticFiles {
    struct File {
        let type: String
        let body: [UInt8]
        let etag: String
    }

    static let maxFiles = 500
    static let maxTotalBytes = 16 << 20
    static let securityHeaders = [
        HTTPField("Content-Security-Policy",
                  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                  + "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        HTTPField("X-Content-Type-Options", "nosniff"),
        HTTPField("X-Frame-Options", "DENY"),
        HTTPField("Referrer-Policy", "no-referrer"),
    ]

    let root: String
    private(set) var files: [String: File] = [:]

    /// Reads every file under `root`; throws when it is not a directory or holds no index.html.
    init(root: String) throws(OrchestraError) {
        self.root = root
        var total = 0
        try load(dir: root, prefix: "", total: &total)
        guard files["index.html"] != nil else { throw OrchestraError(.notFound, "web root \(root) has no index.html") }
    }

    private mutating func load(dir: String, prefix: String, total: inout Int) throws(OrchestraError) {
        guard let d = opendir(dir) else {
            throw OrchestraError(.io, "web root: cannot read \(dir): \(String(cString: strerror(errno)))")
        }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name.hasPrefix(".") { continue }   // ".", "..", and hidden files
            names.append(name)
        }
        for name in names.sorted() {
            let path = dir + "/" + name
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFDIR {
                try load(dir: path, prefix: prefix + name + "/", total: &total)
            } else if st.st_mode & S_IFMT == S_IFREG {
                guard files.count < StaticFiles.maxFiles, total + Int(st.st_size) <= StaticFiles.maxTotalBytes else {
                    throw OrchestraError(.invalidArgument, "web root \(root): more than \(StaticFiles.maxFiles) files or \(StaticFiles.maxTotalBytes) bytes")
                }
                let body = try StaticFiles.read(path)
                total += body.count
                files[prefix + name] = File(type: StaticFiles.contentType(name), body: body, etag: "\"\(StaticFiles.fnv1a(body))\"")
            }
        }
    }

    static func read(_ path: String) throws(OrchestraError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OrchestraError(.io, "web root: cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw OrchestraError(.io, "web root: cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    static func contentType(_ name: String) -> String {
        let ext = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "html": return "text/html; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "json": return "application/json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "txt": return "text/plain; charset=utf-8"
        default: return "application/octet-stream"
        }
    }

    static func fnv1a(_ b: [UInt8]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in b { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01b3 }
        return String(h, radix: 16)
    }

    /// The file a request path names: "/" → index.html, "/ui/a/b.js" → "a/b.js".
    func file(forPath path: String) -> File? {
        if path == "/" || path == "/index.html" { return files["index.html"] }
        guard path.hasPrefix("/ui/") else { return nil }
        let rel = String(path.dropFirst(4))
        // Only names as loaded: no "..", no empty segment, no percent-encoding tricks.
        guard !rel.isEmpty, !rel.contains(".."), !rel.contains("//"), !rel.contains("%") else { return nil }
        return files[rel]
    }

    /// The answer to GET or HEAD of `path`, nil when there is no such file.
    func response(_ request: HTTPRequestInfo) -> HTTPResponse? {
        guard let f = file(forPath: request.path) else { return nil }
        var headers = StaticFiles.securityHeaders
        headers.append(HTTPField("Cache-Control", "no-cache"))
        headers.append(HTTPField("ETag", f.etag))
        if request.header("If-None-Match") == f.etag {
            return HTTPResponse(status: 304, headers: headers, body: [])
        }
        headers.append(HTTPField("Content-Type", f.type))
        return HTTPResponse(status: 200, headers: headers, body: request.method == "HEAD" ? [] : f.body)
    }
}
