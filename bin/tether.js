#!/usr/bin/env node
// Entry point for the `tether` program. Runs the TypeScript sources directly (Node 24 strips types);
// a published package runs the compiled copy in dist/ instead.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
