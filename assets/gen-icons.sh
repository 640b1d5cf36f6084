#!/usr/bin/env bash
# Regenerates the PNG icons in this folder with ImageMagick (Debian: imagemagick).
# The PNGs are committed; run this only to change them. Each state icon has its own colour AND
# its own glyph so the states stay distinct at 16 px and for colour-blind users.
set -euo pipefail
cd "$(dirname "$0")"
S=64
base() { # $1 colour, $2 output; a rounded chip with pins
  convert -size ${S}x${S} xc:none \
    -fill "$1" -draw "roundrectangle 8,8 55,55 9,9" \
    -stroke "$1" -strokewidth 4 \
    -draw "line 20,2 20,8" -draw "line 32,2 32,8" -draw "line 44,2 44,8" \
    -draw "line 20,55 20,61" -draw "line 32,55 32,61" -draw "line 44,55 44,61" \
    -draw "line 2,20 8,20" -draw "line 2,32 8,32" -draw "line 2,44 8,44" \
    -draw "line 55,20 61,20" -draw "line 55,32 61,32" -draw "line 55,44 61,44" \
    "$2"
}
base '#2e9d5b' icons/idle.png     # green chip, white dot: ready
convert icons/idle.png -fill white -draw "circle 32,32 32,22" icons/idle.png
base '#2f6fdb' icons/busy.png     # blue chip, white play triangle: working
convert icons/busy.png -fill white -draw "polygon 24,18 24,46 47,32" icons/busy.png
base '#d9930d' icons/paused.png   # amber chip, two bars: paused
convert icons/paused.png -fill white -draw "rectangle 21,18 28,46" -draw "rectangle 36,18 43,46" icons/paused.png
base '#8a4fd1' icons/yielding.png # purple chip, down arrow: stepped aside for the user
convert icons/yielding.png -fill white -draw "polygon 19,30 45,30 32,47" -draw "rectangle 27,16 37,31" icons/yielding.png
base '#7a7f87' icons/offline.png  # grey chip, white X: not connected
convert icons/offline.png -stroke white -strokewidth 7 -draw "line 21,21 43,43" -draw "line 43,21 21,43" icons/offline.png
base '#d23b3b' icons/error.png    # red chip, exclamation: needs the user
convert icons/error.png -fill white -draw "rectangle 28,15 36,37" -draw "circle 32,45 32,49" icons/error.png
# The application icon, 512 px, for packaging and the window: the busy chip drawn at 5x scale.
convert -size 512x512 xc:none -fill '#1d2633' -draw "roundrectangle 16,16 495,495 96,96" \
  -fill '#2f6fdb' -stroke '#2f6fdb' -strokewidth 0 -draw "translate 96,96 scale 5,5 roundrectangle 8,8 55,55 9,9" \
  -strokewidth 4 -draw "translate 96,96 scale 5,5 line 20,2 20,8 line 32,2 32,8 line 44,2 44,8 line 20,55 20,61 line 32,55 32,61 line 44,55 44,61 line 2,20 8,20 line 2,32 8,32 line 2,44 8,44 line 55,20 61,20 line 55,32 61,32 line 55,44 61,44" \
  -stroke none -fill white -draw "translate 96,96 scale 5,5 polygon 24,18 24,46 47,32" icon.png
