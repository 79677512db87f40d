//! The MSE sink in a real Chromium: MP3 support, appends, end of stream, refusals.

use antiphon::Error;
use antiphon::output::{media::MediaSink, stall::StuckWatch};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::HtmlMediaElement;

/// Two seconds of the project's own synthesised music, encoded by `antiphon-node demo-track`.
const TWO_SECONDS: &[u8] = include_bytes!("fixtures/two-seconds.mp3");

fn audio_element() -> HtmlMediaElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let audio = document.create_element("audio").unwrap();
    document.body().unwrap().append_child(&audio).unwrap();
    audio.dyn_into().unwrap()
}

#[wasm_bindgen_test]
fn chromium_accepts_mpeg_and_refuses_nonsense() {
    assert!(MediaSink::supports("audio/mpeg"));
    assert!(!MediaSink::supports("audio/x-not-a-codec"));
}

#[wasm_bindgen_test]
async fn appended_mp3_is_buffered_for_its_duration() {
    let audio = audio_element();
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    // Two appends split on an MP3 frame boundary, as the segmenter cuts them.
    let (cut, at) = frame_offset(TWO_SECONDS, 1);
    sink.append_at(&TWO_SECONDS[..cut], 0.0, 0.0).await.unwrap();
    sink.append_at(&TWO_SECONDS[cut..], at, 0.0).await.unwrap();
    let end = sink.buffered_until(0.0);
    assert!((1.9..2.2).contains(&end), "buffered until {end} s");
    sink.end_of_stream().unwrap();
}

#[wasm_bindgen_test]
async fn segments_appended_out_of_order_land_at_their_start_times() {
    let audio = audio_element();
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    sink.set_duration(2.0);
    let (cut, at) = frame_offset(TWO_SECONDS, 40);
    assert!((1.0..1.1).contains(&at), "frame 40 starts at {at} s");
    // The second half first: it lands at its own start, leaving the first second empty.
    sink.append_at(&TWO_SECONDS[cut..], at, 0.0).await.unwrap();
    assert_eq!(sink.buffered_until(0.0), 0.0, "nothing at 0 yet");
    let end = sink.buffered_until(at + 0.01);
    assert!((1.9..2.2).contains(&end), "the second half spans to {end} s");
    // Then the first half closes the gap.
    sink.append_at(&TWO_SECONDS[..cut], 0.0, 0.0).await.unwrap();
    let end = sink.buffered_until(0.0);
    assert!((1.9..2.2).contains(&end), "buffered from 0 to {end} s");
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
async fn playback_gets_past_a_gap_between_buffered_ranges() {
    let audio = audio_element();
    audio.set_muted(true);
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    // About one second, then a 0.3 s hole, then the rest.
    let (cut, at) = frame_offset(TWO_SECONDS, 40);
    let resume = at + 0.3;
    sink.append_at(&TWO_SECONDS[..cut], 0.0, 0.0).await.unwrap();
    sink.append_at(&TWO_SECONDS[cut..], resume, 0.0).await.unwrap();
    assert_eq!(sink.buffered_ranges().len(), 2, "two ranges: {:?}", sink.buffered_ranges());
    sink.end_of_stream().unwrap();
    wasm_bindgen_futures::JsFuture::from(audio.play().unwrap()).await.unwrap();
    // What the player's tick does every 250 ms, for up to 8 s.
    let mut watch = StuckWatch::default();
    let start = js_sys::Date::now();
    for _ in 0..32 {
        sleep(250).await;
        let now = js_sys::Date::now() - start;
        let playing = !audio.paused() && !audio.seeking() && !audio.ended();
        let time = audio.current_time();
        if let Some(target) =
            watch.check(std::time::Duration::from_secs_f64(now / 1000.0), time, playing, || sink.buffered_ranges())
        {
            audio.set_current_time(target);
        }
        if audio.ended() || audio.current_time() > resume + 0.2 {
            break;
        }
    }
    let time = audio.current_time();
    assert!(
        audio.ended() || time > resume + 0.2,
        "stuck at {time} s before the gap ({at} to {resume} s), {} nudge(s)",
        watch.nudges
    );
}

#[wasm_bindgen_test]
async fn unsupported_codec_is_a_typed_error() {
    let audio = audio_element();
    match MediaSink::attach(&audio, "audio/x-not-a-codec").await {
        Err(e @ Error::MediaUnsupported { .. }) => assert_eq!(e.code().as_str(), "MEDIA_UNSUPPORTED"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("an unsupported codec was accepted"),
    }
}

#[wasm_bindgen_test]
async fn garbage_bytes_are_rejected_by_the_source_buffer() {
    let audio = audio_element();
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    // Not MP3 at all: the append either fails or buffers nothing.
    let _ = sink.append_at(&[0x00u8; 4096], 0.0, 0.0).await;
    assert_eq!(sink.buffered_until(0.0), 0.0);
}

#[wasm_bindgen_test]
async fn a_full_source_buffer_makes_room_behind_the_playhead() {
    let audio = audio_element();
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    // Chromium keeps about 12 MB of audio per SourceBuffer. The element stays at 0 s, so the
    // browser cannot make room by itself; the sink is told the playhead is at the last append
    // and removes what lies more than 10 s behind it.
    let mut at = 0.0;
    for _ in 0..600 {
        sink.append_at(TWO_SECONDS, at, at).await.unwrap();
        at += 2.0;
        if sink.evictions() > 0 {
            break;
        }
    }
    assert!(sink.evictions() > 0, "600 appends ({} bytes) never filled the SourceBuffer", 600 * TWO_SECONDS.len());
    let playhead = at - 2.0;
    assert_eq!(sink.buffered_until(0.0), 0.0, "the start was removed");
    assert!(sink.buffered_until(playhead) > playhead, "the audio at the playhead is still buffered");
    assert!(sink.buffered_until(playhead - 9.0) > playhead, "10 s behind the playhead are kept");
}

#[wasm_bindgen_test]
async fn a_full_source_buffer_with_nothing_behind_the_playhead_is_buffer_full() {
    let audio = audio_element();
    let sink = MediaSink::attach(&audio, "audio/mpeg").await.unwrap();
    let mut outcome = Ok(());
    for i in 0..600 {
        // The playhead stays at 0: everything buffered is ahead of it.
        outcome = sink.append_at(TWO_SECONDS, f64::from(i) * 2.0, 0.0).await;
        if outcome.is_err() {
            break;
        }
    }
    match outcome {
        Err(e @ Error::BufferFull { .. }) => assert_eq!(e.code().as_str(), "MEDIA_FAILED"),
        other => panic!("expected BufferFull, got {other:?}"),
    }
    assert_eq!(sink.evictions(), 0);
    assert!(sink.buffered_until(0.0) > 0.0, "nothing ahead of the playhead was removed");
}

#[wasm_bindgen_test]
async fn managed_media_source_is_used_where_media_source_is_missing() {
    // Safari on iOS has only ManagedMediaSource. Chromium's MediaSource stands in for it.
    let global = js_sys::global();
    let class = js_sys::Reflect::get(&global, &"MediaSource".into()).unwrap();
    js_sys::Reflect::set(&global, &"ManagedMediaSource".into(), &class).unwrap();
    js_sys::Reflect::delete_property(global.unchecked_ref(), &"MediaSource".into()).unwrap();
    let available = MediaSink::available();
    let supported = MediaSink::supports("audio/mpeg");
    let audio = audio_element();
    let attached = MediaSink::attach(&audio, "audio/mpeg").await;
    let appended = match &attached {
        Ok(sink) => Some(sink.append_at(TWO_SECONDS, 0.0, 0.0).await.map(|()| sink.buffered_until(0.0))),
        Err(_) => None,
    };
    let disabled = js_sys::Reflect::get(&audio, &"disableRemotePlayback".into()).unwrap();
    // Put the page back before asserting anything.
    js_sys::Reflect::set(&global, &"MediaSource".into(), &class).unwrap();
    js_sys::Reflect::delete_property(global.unchecked_ref(), &"ManagedMediaSource".into()).unwrap();
    assert_eq!(available, Some("ManagedMediaSource"));
    assert!(supported);
    assert_eq!(attached.unwrap().kind(), "ManagedMediaSource");
    let end = appended.unwrap().unwrap();
    assert!((1.9..2.2).contains(&end), "buffered until {end} s");
    assert_eq!(disabled, wasm_bindgen::JsValue::TRUE, "remote playback disabled, as Safari requires");
}

#[wasm_bindgen_test]
async fn without_any_media_source_attach_is_media_unsupported() {
    let global = js_sys::global();
    let class = js_sys::Reflect::get(&global, &"MediaSource".into()).unwrap();
    js_sys::Reflect::delete_property(global.unchecked_ref(), &"MediaSource".into()).unwrap();
    let outcome = MediaSink::attach(&audio_element(), "audio/mpeg").await;
    js_sys::Reflect::set(&global, &"MediaSource".into(), &class).unwrap();
    match outcome {
        Err(e @ Error::MediaUnsupported { .. }) => assert!(e.to_string().contains("neither MediaSource")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("attached without MediaSource"),
    }
}

/// Byte offset and start time (s) of MPEG audio frame `n` (MPEG-1 Layer III, as the fixture
/// is).
fn frame_offset(mp3: &[u8], n: usize) -> (usize, f64) {
    const BITRATES: [u32; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
    const RATES: [u32; 3] = [44_100, 48_000, 32_000];
    let mut at = mp3.windows(2).position(|w| w[0] == 0xff && w[1] & 0xe0 == 0xe0).unwrap();
    let mut rate = 44_100;
    for _ in 0..n {
        let h = &mp3[at..at + 4];
        let bitrate = BITRATES[usize::from(h[2] >> 4)] * 1000;
        rate = RATES[usize::from((h[2] >> 2) & 0x3)];
        let padding = u32::from((h[2] >> 1) & 0x1);
        at += (144 * bitrate / rate + padding) as usize;
    }
    (at, n as f64 * 1152.0 / f64::from(rate))
}
