// Subject grammar, validation and tokenisation for the router (include/orchestra.h, section
// ROUTER).
//
// A subject is a dot-separated list of non-empty tokens ("task.stream"). A pattern may also
// use two wildcard tokens: `*` matches exactly one token and `>` matches one or more trailing
// tokens (it must be the last token). A token that mixes a wildcard character with other bytes
// (`a*`, `>b`, `**`) is an ordinary literal token, as in NATS; it matches only itself. A
// published subject may not contain a wildcard token (`*` or `>` on its own).
//
// Everything here works on bytes: tokens are ranges into the caller's buffer, never Strings.

/// Subject and pattern rules: validation, tokenisation and one-off matching.
public enum Subject {
    /// Longest subject or pattern accepted, in bytes (the limit of a message's text fields).
    public static let maxLength = Message.maxTextFieldLength
    /// Most tokens a subject or pattern may have.
    public static let maxTokens = 256

    static let dot = UInt8(ascii: ".")
    static let star = UInt8(ascii: "*")
    static let gt = UInt8(ascii: ">")

    /// Checks a published subject (`isPattern == false`) or a subscription pattern.
    /// Throws `.invalidArgument` (empty subject, empty token, misplaced or forbidden wildcard)
    /// or `.tooBig` (longer than `maxLength` bytes or more than `maxTokens` tokens).
    public static func validate(_ bytes: UnsafeRawBufferPointer, isPattern: Bool) throws(OrchestraError) {
        try withTokens(bytes, isPattern: isPattern) { _ in }
    }

    public static func validate(_ bytes: [UInt8], isPattern: Bool) throws(OrchestraError) {
        try withBytes(bytes) { (b) throws(OrchestraError) in try validate(b, isPattern: isPattern) }
    }

    public static func validate(_ s: String, isPattern: Bool) throws(OrchestraError) {
        try validate(Array(s.utf8), isPattern: isPattern)
    }

    /// Whether `subject` (no wildcards) matches `pattern`. Throws if either is invalid.
    public static func matches(pattern: UnsafeRawBufferPointer, subject: UnsafeRawBufferPointer) throws(OrchestraError) -> Bool {
        try withTokens(pattern, isPattern: true) { (p) throws(OrchestraError) -> Bool in
            try withTokens(subject, isPattern: false) { s in
                var i = 0
                while i < p.count {
                    let pt = p[i]
                    if p.kind(i) == .tail { return s.count > i }
                    if i >= s.count { return false }
                    if p.kind(i) == .literal && !equal(pt, s[i]) { return false }
                    i += 1
                }
                return i == s.count
            }
        }
    }

    public static func matches(pattern: String, subject: String) throws(OrchestraError) -> Bool {
        let p = Array(pattern.utf8), s = Array(subject.utf8)
        return try withBytes(p) { (pb) throws(OrchestraError) -> Bool in
            try withBytes(s) { (sb) throws(OrchestraError) -> Bool in try matches(pattern: pb, subject: sb) }
        }
    }

    // MARK: Tokens

    enum Kind { case literal, one, tail }

    /// The tokens of a validated subject or pattern: token i is bytes[starts[i] ..< starts[i+1]-1].
    struct Tokens {
        let bytes: UnsafeRawBufferPointer
        let starts: UnsafeMutableBufferPointer<Int>
        let count: Int

        subscript(i: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: bytes[starts[i] ..< starts[i + 1] - 1])
        }

        func kind(_ i: Int) -> Kind {
            let t = self[i]
            if t.count == 1 {
                if t[0] == Subject.star { return .one }
                if t[0] == Subject.gt { return .tail }
            }
            return .literal
        }
    }

    /// Validates `bytes` and calls `body` with its tokens. The token boundaries live in a
    /// temporary allocation sized by the most tokens `bytes` can hold (each token takes at least
    /// one byte and a dot), so for ordinary subjects it fits the standard library's on-stack
    /// limit (1 KiB) and tokenising allocates nothing.
    static func withTokens<R>(
        _ bytes: UnsafeRawBufferPointer, isPattern: Bool,
        _ body: (Tokens) throws(OrchestraError) -> R
    ) throws(OrchestraError) -> R {
        let what = isPattern ? "pattern" : "subject"
        if bytes.count == 0 { throw OrchestraError(.invalidArgument, "\(what) is empty") }
        if bytes.count > maxLength {
            throw OrchestraError(.tooBig, "\(what) is \(bytes.count) bytes; the limit is \(maxLength)")
        }
        let result: Result<R, OrchestraError> = withUnsafeTemporaryAllocation(of: Int.self, capacity: min(maxTokens, (bytes.count + 1) / 2) + 1) { starts in
            var count = 0
            var start = 0
            var i = 0
            while i <= bytes.count {
                if i == bytes.count || bytes[i] == dot {
                    let len = i - start
                    if len == 0 {
                        return .failure(OrchestraError(.invalidArgument, "\(what) \(quote(bytes)): empty token at byte \(start)"))
                    }
                    if count == maxTokens {
                        return .failure(OrchestraError(.tooBig, "\(what) \(quote(bytes)) has more than \(maxTokens) tokens"))
                    }
                    if len == 1 && (bytes[start] == star || bytes[start] == gt) {
                        let w = bytes[start] == star ? "*" : ">"
                        if !isPattern {
                            return .failure(OrchestraError(.invalidArgument, "subject \(quote(bytes)): wildcard '\(w)' at byte \(start) is not allowed in a published subject"))
                        }
                        if w == ">" && i != bytes.count {
                            return .failure(OrchestraError(.invalidArgument, "pattern \(quote(bytes)): '>' at byte \(start) must be the last token"))
                        }
                    }
                    starts[count] = start
                    count += 1
                    start = i + 1
                }
                i += 1
            }
            starts[count] = bytes.count + 1
            do throws(OrchestraError) {
                return .success(try body(Tokens(bytes: bytes, starts: starts, count: count)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    @inline(__always)
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        var i = 0
        while i < a.count {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// `body` over the bytes of an array, keeping typed throws.
    @inline(__always)
    static func withBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        let r: Result<R, OrchestraError> = a.withUnsafeBytes { b in
            do throws(OrchestraError) { return .success(try body(b)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// `body` over bytes a message keeps (its subject), keeping the shape of the array form.
    @inline(__always)
    static func withBytes<R>(_ b: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        try body(b)
    }

    /// A subject for an error message: quoted, at most 64 bytes, non-printable bytes escaped.
    static func quote(_ bytes: UnsafeRawBufferPointer) -> String {
        var s = "\""
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for (n, b) in bytes.enumerated() {
            if n == 64 { out += Array("...".utf8); break }
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                out.append(b)
            } else {
                out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            }
        }
        s += String(decoding: out, as: UTF8.self)
        s += "\""
        if bytes.count > 64 { s += " (\(bytes.count) bytes)" }
        return s
    }
}
