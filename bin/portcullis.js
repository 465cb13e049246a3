#!/usr/bin/env node
// Entry point of the `portcullis` command: runs the compiled CLI (npm install builds it).
import { main } from '../dist/host/cli/main.js';

main(process.argv.slice(2)).then((code) => process.exit(code));
