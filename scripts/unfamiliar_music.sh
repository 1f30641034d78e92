#!/usr/bin/env bash
# Makes music of genres the training data never has, to test a model on unfamiliar music:
# the virtual rig only ever plays its generated "ambient" and "jazz" tracks, so a model that
# learnt those may lean on them. This writes ordinary music files for
# `bgm2pose simulate OUT --music OUTDIR/*.flac ...` (or the app's playlist):
#   OUTDIR/piano-<name>.flac     solo piano     (Clara Schumann, Polonaise Op. 1 No. 1)
#   OUTDIR/chamber-<name>.flac   string quartet (Beethoven, Quartet Op. 18 No. 1, 1st mvt.)
#   OUTDIR/ragtime-<name>.flac   piano rag      (Joplin, Maple Leaf Rag), and the same rag
#                                arranged for a small ragtime band (clarinet, cornet,
#                                trombone, piano, banjo, tuba, drums) from the piano score
# Each is at least 2 minutes (a shorter piece is looped), 48 kHz stereo 24-bit FLAC, peak
# -1 dBFS. The scores are public-domain works from music21's corpus; the sound is FluidSynth
# with the FluidR3 General MIDI soundfont (Debian's fluid-soundfont-gm). The quartet is
# spread across the stereo field as it sits on stage; the piano and band have the
# soundfont's own stereo and FluidSynth's reverb.
#
# A tool for making evaluation data, not a dependency of bgm2pose: it installs fluidsynth
# and the soundfont with apt, and music21 + soundfile into its own venv in OUTDIR/.venv
# (never the project's). Safe to run again: it keeps finished files (FORCE=1 remakes them).
#
# Usage: scripts/unfamiliar_music.sh OUTDIR      e.g. scripts/unfamiliar_music.sh data/music
set -euo pipefail

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 OUTDIR   (writes OUTDIR/{piano,chamber,ragtime}-<name>.flac)" >&2
  exit 2
fi
OUTDIR=$1
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

SOUNDFONT=/usr/share/sounds/sf2/FluidR3_GM.sf2
missing=()
command -v fluidsynth >/dev/null || missing+=(fluidsynth)
[ -f "$SOUNDFONT" ] || missing+=(fluid-soundfont-gm)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "unfamiliar_music: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    fluidsynth fluid-soundfont-gm >/dev/null
fi

VENV=$OUTDIR/.venv
if ! "$VENV/bin/python" -c "import music21, soundfile" 2>/dev/null; then
  echo "unfamiliar_music: making the tool venv $VENV (music21, soundfile)"
  python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "music21==10.5.1" \
      "soundfile>=0.12" >"$OUTDIR/.venv/pip.log" 2>&1; then
    cat "$OUTDIR/.venv/pip.log" >&2
    exit 1
  fi
fi

nice -n 10 "$VENV/bin/python" - "$OUTDIR" "$SOUNDFONT" "${FORCE:-0}" <<'PY'
"""Score -> MIDI (music21) -> 48 kHz float WAV (fluidsynth) -> trimmed, looped to >= 2 min,
peak -1 dBFS, 24-bit FLAC with the source in its tags."""
import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

warnings.filterwarnings("ignore")
from music21 import corpus, instrument, midi, note, chord, stream, tempo  # noqa: E402

OUT, SOUNDFONT, FORCE = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
WORK = OUT / ".work"
WORK.mkdir(exist_ok=True)
SR = 48_000
MIN_SECONDS = 120.0
PEAK_DBFS = -1.0

# file: output name; corpus: music21 corpus path; qpm: quarter notes per minute when the
# score has no metronome mark; programs: GM program of each part (None: keep the score's);
# pans: MIDI pan of each part (0 left .. 127 right; None: the soundfont's own)
PIECES = [
    dict(file="piano-clara-schumann-polonaise", corpus="schumann_clara/polonaise_op1n1.mxl",
         composer="Clara Schumann (1819-1896)",
         work="Polonaise in E-flat major, Op. 1 No. 1 (Quatre Polonaises, 1831)",
         qpm=100, programs=[0, 0], pans=None),
    dict(file="chamber-beethoven-quartet-op18-1", corpus="beethoven/opus18no1/movement1.mxl",
         composer="Ludwig van Beethoven (1770-1827)",
         work="String Quartet No. 1 in F major, Op. 18 No. 1, I. Allegro con brio",
         # Beethoven's own metronome mark: dotted half = 58
         qpm=174, programs=[40, 40, 41, 42], pans=[36, 54, 74, 92]),
    dict(file="ragtime-joplin-maple-leaf-rag", corpus="joplin/maple_leaf_rag.mxl",
         composer="Scott Joplin (1868-1917)", work="Maple Leaf Rag (1899), piano",
         qpm=100, programs=[0, 0], pans=None),
    dict(file="ragtime-joplin-maple-leaf-rag-band", corpus="joplin/maple_leaf_rag.mxl",
         composer="Scott Joplin (1868-1917)",
         work="Maple Leaf Rag (1899), arranged here for ragtime band from the piano score",
         qpm=100, programs=None, pans=None, band=True),
]


def load_score(piece):
    s = corpus.parse(piece["corpus"])
    try:
        s = s.expandRepeats()
    except Exception:  # badly formed repeat marks: play it as written
        pass
    # A tempo word without a number would be played at music21's default of 120.
    for m in list(s.recurse().getElementsByClass(tempo.TempoIndication)):
        if not getattr(m, "number", None):
            m.activeSite.remove(m)
    if not s.recurse().getElementsByClass(tempo.MetronomeMark).first():
        s.parts[0].getElementsByClass(stream.Measure).first().insert(
            0, tempo.MetronomeMark(number=piece["qpm"]))
    if piece.get("programs"):
        for part, program in zip(s.parts, piece["programs"]):
            for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
                old.activeSite.remove(old)
            inst = instrument.instrumentFromMidiProgram(program)
            part.insert(0, inst)
    return s


def band_arrangement(s):
    """Joplin's piano texture handed out to a small ragtime band, roughly as a stock band
    arrangement would: the right hand's top line on clarinet, doubled on cornet (an octave
    lower when high); the left hand's bass notes on the beats on tuba and trombone, its
    after-beat chords on banjo; the whole piano part kept, softer; drums keep the two-step."""
    rh, lh = s.parts[0], s.parts[1]
    band = stream.Score()
    parts = {}
    for key, program, vel in [("clarinet", 71, 84), ("cornet", 56, 70), ("trombone", 57, 64),
                              ("banjo", 105, 72), ("tuba", 58, 92), ("piano", 0, 58)]:
        p = stream.Part()
        p.insert(0, instrument.instrumentFromMidiProgram(program))
        parts[key] = (p, vel)
    first_mark = s.recurse().getElementsByClass(tempo.MetronomeMark).first()
    parts["clarinet"][0].insert(0, tempo.MetronomeMark(number=first_mark.number))

    def add(key, pitches, offset, ql, shift=0):
        p, vel = parts[key]
        pitches = [x.transpose(shift) for x in pitches]
        n = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(pitches)
        n.quarterLength = ql
        n.volume.velocity = vel
        p.insert(offset, n)

    for el in rh.flatten().stripTies().notes:
        off, ql = el.offset, el.quarterLength
        pitches = list(el.pitches)
        top = max(pitches)
        add("clarinet", [top], off, ql)
        add("cornet", [top], off, ql, shift=-12 if top.midi > 76 else 0)
        add("piano", pitches, off, ql)
    for el in lh.flatten().stripTies().notes:
        off, ql = el.offset, el.quarterLength
        pitches = list(el.pitches)
        add("piano", pitches, off, ql)
        low = min(pitches)
        if abs(off - round(off)) < 1e-6 and low.midi < 55:  # a bass note on the beat
            add("tuba", [low], off, min(ql, 0.75), shift=-12 if low.midi > 40 else 0)
            add("trombone", [low], off, min(ql, 0.5), shift=12 if low.midi < 40 else 0)
        elif len(pitches) > 1:  # the after-beat chord
            add("banjo", pitches, off, min(ql, 0.4))
    for p, _ in parts.values():
        band.insert(0, p)
    return band, s.highestTime


def to_midi(score, piece, path, drums_until=None):
    mf = midi.translate.music21ObjectToMidiFile(score)
    tracks = [t for t in mf.tracks if any(e.isNoteOn() for e in t.events)]
    if piece.get("pans"):  # CC 10 at time 0 on each part's channel
        for t, pan in zip(tracks, piece["pans"]):
            ch = next(e.channel for e in t.events if e.isNoteOn())
            dt = midi.DeltaTime(t, time=0, channel=ch)
            cc = midi.MidiEvent(t, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=ch)
            cc.parameter1, cc.parameter2 = 10, pan
            t.events[0:0] = [dt, cc]
    if drums_until:
        mf.tracks.append(drum_track(mf, drums_until))
    mf.open(str(path), "wb")
    mf.write()
    mf.close()


def drum_track(mf, quarters):
    """Bass drum on the beats, snare on the after-beats, a crash every 16 bars (2/4)."""
    tpq = mf.ticksPerQuarterNote
    t = midi.MidiTrack(len(mf.tracks))
    events, now = [], 0

    def ev(at, kind, pitch, vel):
        nonlocal now
        events.append(midi.DeltaTime(t, time=at - now, channel=10))
        e = midi.MidiEvent(t, type=kind, channel=10)
        e.pitch, e.velocity = pitch, vel
        events.append(e)
        now = at

    hits = []
    for beat in range(int(quarters)):
        at = beat * tpq
        hits.append((at, 36, 80))
        hits.append((at + tpq // 2, 38, 50 if beat % 2 == 0 else 62))
        if beat % 32 == 0:
            hits.append((at, 49, 70))
    on = midi.ChannelVoiceMessages.NOTE_ON
    off = midi.ChannelVoiceMessages.NOTE_OFF
    timeline = sorted([(at + tpq // 4, 0, off, pitch, 0) for at, pitch, _ in hits]
                      + [(at, 1, on, pitch, vel) for at, pitch, vel in hits],
                      key=lambda e: (e[0], e[1]))
    for at, _, kind, pitch, vel in timeline:
        ev(at, kind, pitch, vel)
    t.events = events
    t.updateEvents()
    end = midi.MidiEvent(t, type=midi.MetaEvents.END_OF_TRACK)
    end.data = b""
    t.events += [midi.DeltaTime(t, time=0), end]
    return t


def render(mid, wav):
    subprocess.run(["fluidsynth", "-n", "-i", "-q", "-T", "wav", "-O", "float",
                    "-r", str(SR), "-g", "0.5", "-F", str(wav), SOUNDFONT, str(mid)],
                   check=True, stdout=subprocess.DEVNULL)


def finish(wav):
    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    assert sr == SR and x.shape[1] == 2, (sr, x.shape)
    loud = np.flatnonzero(np.abs(x).max(axis=1) > 10 ** (-60 / 20))
    if not len(loud):
        raise SystemExit(f"unfamiliar_music: {wav} rendered silent")
    x = x[max(loud[0] - SR // 100, 0): loud[-1] + SR // 2]  # keep 0.5 s of the last release
    piece, loops = x, 1
    while len(x) < MIN_SECONDS * SR:  # too short: play it again after a breath
        x = np.concatenate([x, np.zeros((SR, 2), np.float32), piece])
        loops += 1
    fade = np.linspace(1.0, 0.0, SR // 2, dtype=np.float32)[:, None]
    x[-len(fade):] *= fade
    x *= 10 ** (PEAK_DBFS / 20) / np.abs(x).max()
    return x, loops


def describe(path):
    info = sf.info(str(path))
    with sf.SoundFile(str(path)) as f:
        meta = f.copy_metadata()
    return (f"{path.name}: {int(info.duration // 60)}:{info.duration % 60:04.1f} "
            f"({info.duration:.1f} s), {info.samplerate} Hz, {info.channels} ch\n"
            f"    {meta.get('artist', '?')}, {meta.get('title', '?')}\n"
            f"    {meta.get('comment', '')}")


for piece in PIECES:
    out = OUT / f"{piece['file']}.flac"
    if out.exists() and not FORCE:
        try:
            sf.info(str(out))
            print("kept  " + describe(out), flush=True)
            continue
        except Exception:
            pass  # a damaged leftover: make it again
    score = load_score(piece)
    mid, wav = WORK / f"{piece['file']}.mid", WORK / f"{piece['file']}.wav"
    if piece.get("band"):
        band, quarters = band_arrangement(score)
        to_midi(band, piece, mid, drums_until=quarters)
    else:
        to_midi(score, piece, mid)
    render(mid, wav)
    audio, loops = finish(wav)
    tmp = out.with_name(out.name + ".part")
    with sf.SoundFile(str(tmp), "w", SR, 2, subtype="PCM_24", format="FLAC") as f:
        f.artist = piece["composer"]
        f.title = piece["work"]
        f.comment = (f"score: music21 corpus {piece['corpus']} (public domain)"
                     + (f", played {loops} times" if loops > 1 else "")
                     + f"; sound: FluidSynth, {os.path.basename(SOUNDFONT)} (fluid-soundfont-gm)")
        f.software = "bgm2pose scripts/unfamiliar_music.sh"
        f.write(audio)
    os.replace(tmp, out)
    wav.unlink()
    print("made  " + describe(out), flush=True)
PY
