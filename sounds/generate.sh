#!/usr/bin/env bash
# Regenerates every sound the switch plays, in the format the media relay
# loads: 8 kHz, mono, 16-bit signed PCM WAV. Needs sox and espeak-ng
# (Debian/Ubuntu: apt-get install -y sox espeak-ng). Runs from anywhere;
# writes next to itself. The output is the same on every run (sox -R), so an
# unchanged score leaves git with nothing to commit.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
for tool in sox espeak-ng; do
    command -v "$tool" >/dev/null || { echo "generate.sh: $tool is not installed (apt-get install -y sox espeak-ng)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

RATE=8000
OUT=(-r "$RATE" -c 1 -b 16 -e signed-integer)
BEAT=0.5 # seconds: 120 beats a minute

# "E5" -> semitones from A4 (440 Hz), which is how sox's synth takes a note: %7.
semitones() {
    local name=$1 letter=${1:0:1} octave=${1: -1} offset
    case $letter in
        C) offset=0 ;; D) offset=2 ;; E) offset=4 ;; F) offset=5 ;; G) offset=7 ;; A) offset=9 ;; B) offset=11 ;;
        *) echo "generate.sh: bad note $name" >&2; exit 1 ;;
    esac
    [[ $name == ?#? ]] && offset=$((offset + 1))
    echo $(((octave - 4) * 12 + offset - 9))
}

seconds() { awk -v beats="$1" -v beat="$BEAT" 'BEGIN { print beats * beat }'; }

n=0
# One plucked note, faded out before its end so that notes join without a click.
pluck() { # note beats file
    local len
    len=$(seconds "$2")
    sox -R -n "${OUT[@]}" "$3" synth "$len" pluck "%$(semitones "$1")" fade t 0 "$len" 0.04
}

# A soft sine chord for one bar; it swells in and out so bars join without a click.
pad() { # beats file notes...
    local len=$(seconds "$1") file=$2 tones=()
    shift 2
    for note in "$@"; do tones+=(sine "%$(semitones "$note")"); done
    sox -R -r "$RATE" -c $# -n "${OUT[@]}" "$file" synth "$len" "${tones[@]}" remix - fade h 0.3 "$len" 0.4
}

# --- Music on hold ---------------------------------------------------------
# Twelve bars of 4 beats (24 s): a melody over a harp-like arpeggio and a soft
# chord pad, in C major. The last bar is the dominant (G7), which leads back to
# the first bar's C, so the file loops as one phrase. There is no bass line:
# phones cut below 300 Hz.
#
# Each bar: chord notes (for the pad and the arpeggio) | melody as note:beats.
score=(
    "C4 E4 G4 | E5:1 D5:0.5 C5:0.5 E5:1 G5:1"
    "A3 C4 E4 | A5:2 G5:1 E5:1"
    "F4 A4 C5 | F5:1 E5:0.5 D5:0.5 C5:1 A4:1"
    "G3 B3 D4 | D5:2 B4:1 G4:1"
    "C4 E4 G4 | E5:1 D5:0.5 C5:0.5 E5:1 G5:1"
    "A3 C4 E4 | C6:2 B5:1 A5:1"
    "D4 F4 A4 | A5:1 G5:0.5 F5:0.5 F5:1 D5:1"
    "G3 B3 D4 | G5:2 F5:1 D5:1"
    "F4 A4 C5 | C5:1 F5:1 A5:1 G5:1"
    "G3 B3 D4 | B4:1 D5:1 G5:1 F5:1"
    "C4 E4 G4 | E5:1 G5:1 C6:1 E5:1"
    "G3 B3 F4 | D5:1 F5:1 B4:1 D5:1"
)

melody=() arpeggio=() pads=()
for bar in "${score[@]}"; do
    read -r -a chord <<<"${bar%%|*}"
    read -r -a notes <<<"${bar#*|}"
    for item in "${notes[@]}"; do
        n=$((n + 1))
        pluck "${item%%:*}" "${item#*:}" "$work/m$n.wav"
        melody+=("$work/m$n.wav")
    done
    # Eighth notes: root, fifth, third, fifth, an octave up, fifth, third, fifth.
    for note in "${chord[0]}" "${chord[2]}" "${chord[1]}" "${chord[2]}" \
        "${chord[0]:0:-1}$((${chord[0]: -1} + 1))" "${chord[2]}" "${chord[1]}" "${chord[2]}"; do
        n=$((n + 1))
        pluck "$note" 0.5 "$work/a$n.wav"
        arpeggio+=("$work/a$n.wav")
    done
    n=$((n + 1))
    pad 4 "$work/p$n.wav" "${chord[@]}"
    pads+=("$work/p$n.wav")
done
sox "${melody[@]}" "$work/melody.wav"
sox "${arpeggio[@]}" "$work/arpeggio.wav"
sox "${pads[@]}" "$work/pad.wav"
# Mixed, softened (a plucked string at 8 kHz is bright up to the Nyquist
# frequency), and normalised to -6 dBFS peak: loud enough over a phone, with
# headroom for the G.711 encoders. 5 ms fades make the loop point silent on both sides.
sox -R -m -v 1.0 "$work/melody.wav" -v 0.45 "$work/arpeggio.wav" -v 0.12 "$work/pad.wav" \
    "${OUT[@]}" "$here/moh.wav" lowpass 2800 fade t 0.005 -0 0.005 gain -n -6

# --- Spoken prompts ----------------------------------------------------------
# One directory per language (music on hold, above, has none). These are US
# English, spoken by espeak-ng.
lang=en voice=en-us speed=150
#
# name|text; a name with a slash is in a subfolder. A text ending in a comma
# is the start of a sentence that a number or another clip completes: espeak-ng
# says it with the tone of an unfinished sentence. The switch (Sounds::say)
# plays clips in a row with a short fixed gap between them, so every clip is
# cut at its first and last sound, with no silence of its own.
prompts=(
    # Any call.
    "please-hold|Please hold. Your call will be answered shortly."
    "goodbye|Thank you for calling. Goodbye."
    # Queues: the periodic announcement is queue-thank-you or queue-busy, then
    # "queue-position <n>", then "queue-wait [queue-less-than] <n> minute(s)".
    "queue-thank-you|Thank you for holding."
    "queue-busy|All our agents are busy. Please stay on the line."
    "queue-position|You are caller number,"
    "queue-wait|Your estimated wait time is,"
    "queue-less-than|less than,"
    "minute|minute."
    "minutes|minutes."
    "queue-full|We are sorry, all lines are busy. Please call again later."
    # Agents' feature codes.
    "agent-logged-in|You are logged in."
    "agent-logged-out|You are logged out."
    "agent-paused|You are paused."
    "agent-unpaused|You are no longer paused."
    # PIN and account-number IVRs.
    "ivr-welcome|Welcome."
    "ivr-enter-pin|Please enter your PIN, followed by the hash key."
    "ivr-wrong-pin|That PIN is not valid."
    "ivr-too-many|Too many attempts."
    "ivr-enter-reference|Please enter your account number, followed by the hash key."
    "ivr-connecting|Connecting you now."
)
# Numbers: any number up to 9999 is said by joining these ("numbers/1
# numbers/hundred numbers/20 numbers/5"); digits are read back one by one.
words=(zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen)
for i in "${!words[@]}"; do
    prompts+=("numbers/$i|${words[i]}")
    ((i < 10)) && prompts+=("digits/$i|${words[i]}")
done
tens=(twenty thirty forty fifty sixty seventy eighty ninety)
for i in "${!tens[@]}"; do prompts+=("numbers/$((i * 10 + 20))|${tens[i]}"); done
prompts+=("numbers/hundred|hundred" "numbers/thousand|thousand")

for prompt in "${prompts[@]}"; do
    name=${prompt%%|*} file="$here/$lang/${prompt%%|*}.wav"
    mkdir -p "$(dirname "$file")"
    espeak-ng -v "$voice" -s "$speed" -w "$work/speech.wav" "${prompt#*|}"
    # Cut where the speech starts and ends (espeak-ng's silence is exact
    # zeros; -60 dB keeps the softest consonants), then the telephone band,
    # normalised like the music, with 5 ms fades so that a cut cannot click.
    sox -R "$work/speech.wav" "${OUT[@]}" "$file" \
        silence 1 0.005 -60d reverse silence 1 0.005 -60d reverse \
        highpass 300 lowpass 3400 rate "$RATE" gain -n -6 fade t 0.005 reverse fade t 0.005 reverse
done

echo "generate.sh: $(find "$here" -name '*.wav' | wc -l) files"
for path in "$here/moh.wav" "$here/$lang" "$here"; do du -sh --apparent-size "$path"; done
