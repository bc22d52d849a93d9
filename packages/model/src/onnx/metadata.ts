/**
 * Reads the metadata of an ONNX file without loading its graph: bertq stores the options and config
 * it built a graph with there, so a ready `.onnx` file made by bertq needs nothing else beside it.
 */
import { readFile } from 'node:fs/promises';
import { readFields, WIRE_LEN } from '../proto/wire.js';

const MODEL_METADATA_PROPS = 14;

export function readOnnxMetadata(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const text = new TextDecoder();
  for (const f of readFields(bytes)) {
    if (f.field !== MODEL_METADATA_PROPS || f.wire !== WIRE_LEN) continue;
    let key = '';
    let value = '';
    for (const kv of readFields(f.bytes)) {
      if (kv.field === 1) key = text.decode(kv.bytes);
      else if (kv.field === 2) value = text.decode(kv.bytes);
    }
    out[key] = value;
  }
  return out;
}

export async function readOnnxFileMetadata(path: string): Promise<Record<string, string>> {
  return readOnnxMetadata(await readFile(path));
}
