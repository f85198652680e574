#!/usr/bin/env bash
# The faceledger demo: enrol a small credited gallery, search for a known and an unknown person,
# verify two photos 1:1, and check the ledger. Every command below is the real CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
FL=".venv/bin/faceledger"
DATA="tests/data"
export FACELEDGER_HOME="demo-data"
export FACELEDGER_OPERATOR="demo-analyst"
export COLUMNS="${COLUMNS:-110}"
rm -rf "$FACELEDGER_HOME"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Each command is shown as it can be pasted into a shell: an argument is quoted where the shell needs it.
show() {
  local line="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $arg"; else line+=" ${arg@Q}"; fi
  done
  printf '\033[2m$%s\033[0m\n' "$line"
}
run() { show "$@"; "$@"; }

show export FACELEDGER_HOME="$FACELEDGER_HOME" FACELEDGER_OPERATOR="$FACELEDGER_OPERATOR"

say "1. Create a gallery and its policy: the purposes a search may state, records kept 365 days,
      open-set searches held to a 1% chance of any false candidate for someone not enrolled."
run $FL gallery create demo --purpose "identity check" --purpose "missing person" --retain-days 365

say "2. Enrol 32 photos of 14 people, each with its provenance (source and legal basis)."
run $FL enroll "$DATA/open-faces/macron_2014.jpg" --subject "Emmanuel Macron" --gallery demo \
    --source "Wikimedia Commons (see tests/data/CREDITS.md)" --legal-basis "openly licensed portrait"
run $FL enroll "$DATA/open-faces/ardern_2018.jpg" --subject "Jacinda Ardern" --gallery demo \
    --source "Wikimedia Commons (see tests/data/CREDITS.md)" --legal-basis "openly licensed portrait"
for file in obama_senate_portrait.jpg:"Barack Obama" sunak_portrait.jpg:"Rishi Sunak" \
            eileen_collins_nasa.png:"Eileen Collins"; do
  run $FL enroll "$DATA/open-faces/${file%%:*}" --subject "${file#*:}" --gallery demo \
      --source "Wikimedia Commons / NASA (see tests/data/CREDITS.md)" --legal-basis "public domain or open licence"
done
gallery_files=()
for person in "$DATA"/lfw/*/; do
  count=$(ls "$person" | wc -l)
  if [ "$count" -ge 4 ]; then
    while read -r f; do gallery_files+=("$person$f"); done < <(ls "$person" | sort | head -3)
  fi
done
run $FL enroll "${gallery_files[@]}" --subject-from-folder --gallery demo --workers 2 \
    --source "LFW research dataset, UMass Amherst (see tests/data/CREDITS.md)" --legal-basis "research and evaluation"
run $FL gallery list

say "3. Search with a photo of Emmanuel Macron taken 11 years after the enrolled one."
run $FL search "$DATA/open-faces/macron_2025.jpg" --gallery demo --purpose "identity check" --case DEMO-1

say "4. Search with a new photo of Angela Merkel (her 4th image; only the first three are enrolled)."
run $FL search "$DATA/lfw/Angela_Merkel/Angela_Merkel_0004.jpg" --gallery demo --purpose "identity check" --case DEMO-2

say "5. Search for Shinzo Abe, who is NOT in the gallery. The right answer is 'no match'."
run $FL search "$DATA/lfw/Shinzo_Abe/Shinzo_Abe_0001.jpg" --gallery demo --purpose "missing person" --case DEMO-3

say "6. Searches without a purpose, or with a purpose the gallery does not allow, are refused (exit code 2)."
run $FL search "$DATA/lfw/Pele/Pele_0001.jpg" --gallery demo --case DEMO-4 || echo "(refused, as it should be)"
run $FL search "$DATA/lfw/Pele/Pele_0001.jpg" --gallery demo --purpose "curiosity" --case DEMO-4 \
    || echo "(refused and ledgered as a denied attempt)"

say "7. A candidate is not an identification: a second person, a reviewer, records a decision."
printf '\033[2m$ %s user add rita --role reviewer --json   (the token is printed once; kept in $RITA)\033[0m\n' "$FL"
RITA=$($FL user add rita --role reviewer --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ENTRY=$($FL search "$DATA/lfw/Colin_Powell/Colin_Powell_0004.jpg" --gallery demo --purpose "identity check" \
          --case DEMO-7 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["ledger_entry"])')
printf '\033[2m$ FACELEDGER_TOKEN=$RITA %s review %s --candidate 1 --decision confirm\033[0m\n' "$FL" "$ENTRY"
FACELEDGER_TOKEN="$RITA" $FL review "$ENTRY" --candidate 1 --decision confirm --note "same person, checked by eye"
run $FL result "$ENTRY"

say "8. 1:1 verification: Jacinda Ardern in 2018 and in 2022; then Ardern against Sunak."
run $FL verify "$DATA/open-faces/ardern_2018.jpg" "$DATA/open-faces/ardern_2022.jpg" --purpose "demo: 1:1" --case DEMO-5
run $FL verify "$DATA/open-faces/ardern_2018.jpg" "$DATA/open-faces/sunak_portrait.jpg" --purpose "demo: 1:1" --case DEMO-6

say "9. The ledger: every act above, refusals included, is recorded and hash-chained. Check the chain."
run $FL audit list --limit 8
run $FL audit verify

say "10. The transparency report: searches by purpose and user, 'no match' share, reviews, denials."
run $FL report transparency --out "$FACELEDGER_HOME/report"

printf '\nOpen %s/report/transparency.html in a browser. The demo data directory is %s/ (delete it freely).\nTry: %s --help\n' "$FACELEDGER_HOME" "$FACELEDGER_HOME" "$FL"
printf '\nThe web app on this data directory: the first line prints your token once, the second starts the\n'
printf 'server; open http://127.0.0.1:8000 and sign in with the token.\n'
printf 'FACELEDGER_HOME=%s %s user add you --role admin\n' "$FACELEDGER_HOME" "$FL"
printf 'FACELEDGER_HOME=%s %s serve\n' "$FACELEDGER_HOME" "$FL"
