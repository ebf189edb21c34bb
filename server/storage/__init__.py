"""Photos and attachments (照片/附件), bottom to top: `blobs` (the content-addressed blob
store) · `images` (checking by content, EXIF stripping, thumbnails, HEIC) · `models` (the
table) · `service` (upload, link, read; the object-access rules domain packages fill) ·
`schemas` · `views` (the blueprint)."""
