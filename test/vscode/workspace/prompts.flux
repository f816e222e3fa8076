# Test prompts for the real-VS-Code tests (golden tiny model: images are noise).
steps: 2
width: 64
height: 64

a lighthouse on a cliff at dawn,
oil painting
seed: 42

a red fox in fresh snow
seed: 7
count: 2
out: foxes/{seed}-{index}.png
