#!/usr/bin/env node
/**
 * The `restpipe-certs` executable. Everything lives in cli-main.ts so tests can run it
 * in-process.
 */
import { main, processIo } from './cli-main.js';

process.exitCode = await main(process.argv.slice(2), processIo());
