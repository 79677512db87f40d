#!/usr/bin/env bash
# Regenerates the small audio files the ingest tests read (crates/antiphon-node/tests/fixtures).
# They are committed, so tests need no encoder; this script records how they were made.
# Needs ffmpeg (Debian: apt-get install ffmpeg). Each file is 3 s of a chord with tags; the
# MP3, M4A and FLAC also carry a 32x32 PNG cover.
set -euo pipefail
out=${1:-crates/antiphon-node/tests/fixtures}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="sine=f=220:d=3,volume=0.3[a];sine=f=277:d=3,volume=0.3[b];sine=f=330:d=3,volume=0.3[c];[a][b][c]amix=inputs=3"
ffmpeg -loglevel error -y -f lavfi -i "$src" -ac 2 -ar 44100 "$tmp/src.wav"
ffmpeg -loglevel error -y -f lavfi -i "color=c=0x2a6f97:s=32x32:d=1" -frames:v 1 "$tmp/cover.png"
tags=(-metadata title="Fixture Chord" -metadata artist="Antiphon Tests" -metadata album="Fixtures")
with_cover=(-i "$tmp/cover.png" -map 0:a -map 1:v -disposition:v attached_pic)
ffmpeg -loglevel error -y -i "$tmp/src.wav" "${with_cover[@]}" -c:a libmp3lame -b:a 64k -c:v png -id3v2_version 3 "${tags[@]}" "$out/chord.mp3"
ffmpeg -loglevel error -y -i "$tmp/src.wav" -c:a aac -b:a 64k -f adts "$out/chord.aac"
ffmpeg -loglevel error -y -i "$tmp/src.wav" "${with_cover[@]}" -c:a aac -b:a 64k -c:v png "${tags[@]}" "$out/chord.m4a"
ffmpeg -loglevel error -y -i "$tmp/src.wav" "${with_cover[@]}" -ac 1 -ar 22050 -c:a flac -c:v png "${tags[@]}" "$out/chord.flac"
ffmpeg -loglevel error -y -i "$tmp/src.wav" -c:a libvorbis -q:a 0 "${tags[@]}" "$out/chord.ogg"
ffmpeg -loglevel error -y -i "$tmp/src.wav" -ac 1 -ar 22050 -t 1 -c:a pcm_s16le "$out/chord.wav"
ls -l "$out"
