// Reading one member of JSON text by a dotted path ("parameters.command"), for callers
// without a JSON library (the C ABI's orc_json_get_string / orc_json_get_int).

extension JSONValue {
    /// The value at `path` of the JSON text `json`: the keys of nested objects separated by
    /// '.' (an empty key is a key too: "a..b" is a, "", b). The text is parsed whole, with the
    /// default limits, so bad JSON fails even when the member exists. Throws `.notFound` when
    /// a step is missing or a value before the last step is not an object, and the parser's
    /// errors (`.parse`, `.tooBig`).
    public static func member(atPath path: String, of json: UnsafeRawBufferPointer) throws(OrchestraError) -> JSONValue {
        var v = try JSONValue.parse(json)
        for key in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard case .object = v else {
                throw OrchestraError(.notFound, "no member '\(path)': a step before '\(key)' is not an object")
            }
            guard let next = v[String(key)] else { throw OrchestraError(.notFound, "no member '\(path)' (missing '\(key)')") }
            v = next
        }
        return v
    }
}
