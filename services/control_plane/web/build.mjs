// Copies the browser builds of the front-end packages into dist/ (served at /vendor by the app), and
// turns world-atlas's TopoJSON countries into the GeoJSON ECharts draws the world map from (dashboard
// 12): each feature keeps the ISO 3166-1 numeric code as `id` and as `properties.iso_n3`.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const dist = join(here, "dist");
mkdirSync(dist, { recursive: true });
const files = {
  "echarts/dist/echarts.min.js": "echarts.min.js",
};
for (const [from, to] of Object.entries(files)) {
  copyFileSync(join(here, "node_modules", from), join(dist, to));
  console.log(`web: ${from} -> dist/${to}`);
}

const { feature } = require("topojson-client");
const topology = JSON.parse(readFileSync(join(here, "node_modules", "world-atlas", "countries-110m.json"), "utf8"));
const countries = feature(topology, topology.objects.countries);
// A planar map draws a ring that crosses the antimeridian (Russia, Fiji) as a line across the world:
// move its western points east of 180 degrees. Antarctica (010) goes all the way round: left out.
const unwrap = ring => {
  const lons = ring.map(p => p[0]);
  return Math.min(...lons) < -170 && Math.max(...lons) > 170 ? ring.map(([x, y]) => [x < 0 ? x + 360 : x, y]) : ring;
};
const unwrapGeometry = g => g.type === "Polygon" ? { ...g, coordinates: g.coordinates.map(unwrap) }
  : g.type === "MultiPolygon" ? { ...g, coordinates: g.coordinates.map(poly => poly.map(unwrap)) } : g;
countries.features = countries.features
  .filter(f => f.id !== undefined && f.id !== "010")
  .map(f => ({ ...f, geometry: unwrapGeometry(f.geometry) }))
  .map(f => ({ type: "Feature", id: f.id, properties: { name: f.properties.name, iso_n3: f.id }, geometry: f.geometry }));
// 0.01 degree (about 1 km) is finer than the 110m source: round coordinates to halve the file
const rounded = (key, value) => (typeof value === "number" && key !== "id" ? Math.round(value * 100) / 100 : value);
writeFileSync(join(dist, "world-countries.geo.json"), JSON.stringify(countries, rounded));
console.log(`web: world-atlas/countries-110m.json -> dist/world-countries.geo.json (${countries.features.length} countries)`);
