"""Bad and odd inputs for streamseg, generated at test time (nothing big is committed).

- `media`: broken, odd and valid-but-unusual video/image files.
- `models`: a tiny checkpoint and broken or hostile model files.
- `places`: missing paths, refused URLs, read-only and full file systems.
- `cli`: run the real `streamseg` command in its own process.
- `isolate`: run a function in its own process with a time limit (hangs and crashes fail).
"""
