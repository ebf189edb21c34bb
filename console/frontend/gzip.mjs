// After `vite build`: a .gz beside each asset (served as is when the browser accepts gzip;
// werkzeug does not compress files itself).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const dir = new URL("../static/assets/", import.meta.url);
for (const name of readdirSync(dir)) {
  if (/\.(js|css)$/.test(name)) writeFileSync(new URL(name + ".gz", dir), gzipSync(readFileSync(new URL(name, dir)), { level: 9 }));
}
