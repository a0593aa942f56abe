// Copies the browser builds of the front-end packages into dist/ (served at /vendor by the app).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
mkdirSync(dist, { recursive: true });
const files = {
  "echarts/dist/echarts.min.js": "echarts.min.js",
};
for (const [from, to] of Object.entries(files)) {
  copyFileSync(join(here, "node_modules", from), join(dist, to));
  console.log(`web: ${from} -> dist/${to}`);
}
