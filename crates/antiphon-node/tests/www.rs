//! `serve --www`: static files, and their precompressed copies for clients that accept them.

mod common;

#[test]
fn static_files_go_out_precompressed_to_clients_that_accept_it() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let module = b"wasm module bytes, as they are on disk".repeat(100);
    std::fs::write(www.join("app.wasm"), &module).unwrap();
    // Stand-ins: the server sends these files as they are, it does not compress.
    std::fs::write(www.join("app.wasm.br"), b"brotli copy").unwrap();
    std::fs::write(www.join("app.wasm.gz"), b"gzip copy").unwrap();
    std::fs::write(www.join("plain.js"), b"no copies of this one").unwrap();
    let served = common::serve(&dir.path().join("data"), &["--www", www.to_str().unwrap()]);

    let br = served.get("/app.wasm", &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(br.status, 200);
    assert_eq!((br.header("content-encoding"), br.body.as_slice()), (Some("br"), &b"brotli copy"[..]));
    // The type is the file's, so that WebAssembly.instantiateStreaming takes it.
    assert_eq!(br.header("content-type"), Some("application/wasm"));

    let gz = served.get("/app.wasm", &[("Accept-Encoding", "gzip")]);
    assert_eq!((gz.header("content-encoding"), gz.body.as_slice()), (Some("gzip"), &b"gzip copy"[..]));

    let identity = served.get("/app.wasm", &[]);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.body, module);

    let no_copy = served.get("/plain.js", &[("Accept-Encoding", "br")]);
    assert_eq!((no_copy.status, no_copy.header("content-encoding")), (200, None));
    assert_eq!(no_copy.body, b"no copies of this one");
}
