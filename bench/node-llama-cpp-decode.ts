/**
 * One node-llama-cpp decode measurement in a process of its own (see
 * nodeLlamaCppDecode in llama-cpp-decode.ts), so that llama.cpp and
 * onnxruntime never share a process while either is timed:
 *
 *   node dist/bench/node-llama-cpp-decode.js FILE.gguf PROMPT THREADS TOKENS [REQUESTS]
 *
 * Prints {"tokensPerSecond": N} as its last line.
 *
 * @module
 */
import { nodeLlamaCppDecodeHere, printNodeLlamaCppResult } from './llama-cpp-decode.js';

const [file, prompt, threads, numTokens, requests = '1'] = process.argv.slice(2);
if (!file || prompt === undefined || !threads || !numTokens) throw new Error('usage: node-llama-cpp-decode.js FILE.gguf PROMPT THREADS TOKENS [REQUESTS]');
printNodeLlamaCppResult(await nodeLlamaCppDecodeHere(file, prompt, Number(threads), Number(numTokens), Number(requests)));
