import { cpSync } from "node:fs";
import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

// Grafana's panels ask for their icons and the Inter font under public/ (as Grafana serves them): copied from
// @grafana/ui and inter-ui (rsms' own files, as Grafana ships them) next to the built page.
function grafanaPublic(): Plugin {
  const modules = resolve(import.meta.dirname, "node_modules");
  return {
    name: "grafana-public",
    closeBundle() {
      cpSync(resolve(modules, "@grafana/ui/dist/public/img"), resolve(import.meta.dirname, "dist/public/build/img"), { recursive: true });
      for (const weight of ["Regular", "Medium"]) {
        cpSync(resolve(modules, `inter-ui/web/Inter-${weight}.woff2`), resolve(import.meta.dirname, `dist/public/fonts/inter/Inter-${weight}.woff2`));
      }
    },
  };
}

// base "./": bench/grafana_panels.py serves dist/ with Prometheus' answers written into index.html.
export default defineConfig({ base: "./", plugins: [react(), grafanaPublic()], build: { chunkSizeWarningLimit: 20000 } });
