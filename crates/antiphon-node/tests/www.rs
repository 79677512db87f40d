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

#[test]
fn hashed_files_are_cached_for_good_and_the_rest_revalidated_with_a_304() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), b"<!doctype html>").unwrap();
    std::fs::write(www.join("main.3f9c0a5be1d27c4e8a11.js"), b"bundle").unwrap();
    std::fs::write(www.join("9d8e7f6a5b4c3d2e1f00.module.wasm"), b"module").unwrap();
    std::fs::write(www.join("9d8e7f6a5b4c3d2e1f00.module.wasm.br"), b"brotli module").unwrap();
    let served = common::serve(&dir.path().join("data"), &["--www", www.to_str().unwrap()]);

    let immutable = Some("public, max-age=31536000, immutable");
    assert_eq!(served.get("/main.3f9c0a5be1d27c4e8a11.js", &[]).header("cache-control"), immutable);
    let wasm = served.get("/9d8e7f6a5b4c3d2e1f00.module.wasm", &[("Accept-Encoding", "br")]);
    assert_eq!((wasm.header("content-encoding"), wasm.header("cache-control")), (Some("br"), immutable));
    // A cache keeps the brotli copy for clients that accept brotli only.
    let vary: Vec<&str> = wasm.headers.iter().filter(|(n, _)| n == "vary").map(|(_, v)| v.as_str()).collect();
    assert!(vary.iter().any(|v| v.split(',').any(|h| h.trim() == "accept-encoding")), "Vary: {vary:?}");

    for path in ["/", "/index.html"] {
        let page = served.get(path, &[]);
        assert_eq!((page.status, page.header("cache-control")), (200, Some("no-cache")), "{path}");
        // A returning visitor's revalidation costs a 304, not the file.
        let since = page.header("last-modified").expect("Last-Modified").to_string();
        let again = served.get(path, &[("If-Modified-Since", since.as_str())]);
        assert_eq!((again.status, again.header("cache-control")), (304, Some("no-cache")), "{path}");
        assert!(again.body.is_empty());
    }
    // Nothing is said about what is not there.
    let missing = served.get("/main.0000000000000000aaaa.js", &[]);
    assert_eq!((missing.status, missing.header("cache-control")), (404, None));
}
