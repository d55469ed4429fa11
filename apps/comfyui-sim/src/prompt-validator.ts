/**
 * Port of ComfyUI 0.3.64 `execution.validate_prompt` / `validate_inputs`: the same checks in the
 * same order, the same error types, messages and details, including its quirks (errors only on
 * the culprit node, `details: ""` for upstream errors, KeyError from a link to a missing node
 * becoming `exception_during_validation`, coerced values written back into the prompt).
 *
 * Throws PyException where the real server raises inside the HTTP handler (→ HTTP 500).
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { NodeDef, inputConfig, inputInfo } from './node-registry';
import { JsonObject, JsonValue, isJsonObject, keysOf, orderedObject, setKey } from './py-json';
import { PyException, pyFloat, pyInt, pyLess, pyEquals, pyRepr, pyStr, pyTruthy, pyTypeName } from './py-values';

type Reason = JsonObject;
type Validated = [boolean, Reason[], string];

export interface ValidationResult {
  ok: boolean;
  error: JsonObject | null;
  goodOutputs: string[];
  nodeErrors: JsonObject;
}

const err = (type: string, message: string, details: string, extra: JsonObject = {}): JsonObject =>
  orderedObject([['type', type], ['message', message], ['details', details], ['extra_info', extra]]);

/** A traceback as `traceback.format_tb` would print it (file paths of a typical install). */
function fakeTraceback(fn: string): string[] {
  return [
    `  File "/opt/ComfyUI/execution.py", line 1002, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n`,
    `  File "/opt/ComfyUI/execution.py", line 738, in ${fn}\n    o_class_type = prompt[o_id]['class_type']\n`,
  ];
}

/** `prompt[key]` with Python dict semantics (string keys only; unhashable keys raise TypeError). */
function lookupNode(prompt: JsonObject, key: JsonValue): JsonObject {
  if (Array.isArray(key) || isJsonObject(key)) {
    throw new PyException('TypeError', `unhashable type: '${pyTypeName(key)}'`);
  }
  if (typeof key === 'string' && Object.prototype.hasOwnProperty.call(prompt, key)) {
    const node = prompt[key];
    if (isJsonObject(node)) return node;
  }
  throw new PyException('KeyError', pyRepr(key));
}

/** `RETURN_TYPES[index]` with Python tuple indexing rules. */
function returnTypeAt(types: string[], index: JsonValue): string {
  let i: number;
  if (typeof index === 'boolean') i = index ? 1 : 0;
  else if (typeof index === 'number' && Number.isInteger(index)) i = index;
  else if (typeof index === 'bigint') throw new PyException('IndexError', "cannot fit 'int' into an index-sized integer");
  else throw new PyException('TypeError', `tuple indices must be integers or slices, not ${pyTypeName(index)}`);
  const real = i < 0 ? types.length + i : i;
  if (real < 0 || real >= types.length) throw new PyException('IndexError', 'tuple index out of range');
  return types[real];
}

function typesCompatible(received: string, wanted: string | string[]): boolean {
  if (received === wanted) return true;
  if (received === '*' || wanted === '*') return true;
  if (typeof wanted !== 'string') return false;
  const r = new Set(received.split(',').map((t) => t.trim()));
  return wanted.split(',').some((t) => r.has(t.trim()));
}

class Validator {
  private readonly validated = new Map<string, Validated>();
  private readonly inProgress = new Set<string>();

  constructor(private readonly prompt: JsonObject, private readonly registry: Map<string, NodeDef>, private readonly inputDir?: string) {}

  get results(): Map<string, Validated> {
    return this.validated;
  }

  validateInputs(id: string): Validated {
    const done = this.validated.get(id);
    if (done) return done;
    // A cycle recurses until Python's recursion limit in the real server.
    if (this.inProgress.has(id)) throw new PyException('RecursionError', 'maximum recursion depth exceeded');
    this.inProgress.add(id);
    try {
      return this.validateNode(id);
    } finally {
      this.inProgress.delete(id);
    }
  }

  private validateNode(id: string): Validated {
    const node = lookupNode(this.prompt, id);
    if (!Object.prototype.hasOwnProperty.call(node, 'inputs')) throw new PyException('KeyError', "'inputs'");
    const inputs = node.inputs;
    if (!isJsonObject(inputs)) throw new PyException('TypeError', `argument of type '${pyTypeName(inputs)}' is not iterable`);
    const def = this.registry.get(String(node.class_type));
    if (!def) throw new PyException('KeyError', pyRepr(node.class_type));

    const errors: Reason[] = [];
    let valid = true;
    for (const [name] of [...def.required, ...def.optional]) {
      const info = inputInfo(def, name);
      if (!info) continue;
      const { category, spec } = info;
      if (!Object.prototype.hasOwnProperty.call(inputs, name)) {
        if (category === 'required') {
          errors.push(err('required_input_missing', 'Required input is missing', name, orderedObject([['input_name', name]])));
        }
        continue;
      }
      let val = inputs[name];
      const config = inputConfig(spec);

      if (Array.isArray(val)) {
        if (val.length !== 2) {
          errors.push(err('bad_linked_input', 'Bad linked input, must be a length-2 list of [node_id, slot_index]', name,
            orderedObject([['input_name', name], ['input_config', config], ['received_value', val]])));
          continue;
        }
        const source = lookupNode(this.prompt, val[0]);
        const sourceDef = this.registry.get(String(source.class_type));
        if (!sourceDef) throw new PyException('KeyError', pyRepr(source.class_type));
        const receivedType = returnTypeAt(sourceDef.output, val[1]);
        if (!typesCompatible(receivedType, spec.type)) {
          errors.push(err('return_type_mismatch', 'Return type mismatch between linked nodes',
            `${name}, received_type(${receivedType}) mismatch input_type(${pyStr(spec.type)})`,
            orderedObject([['input_name', name], ['input_config', config], ['received_type', receivedType], ['linked_node', val]])));
          continue;
        }
        const sourceId = val[0] as string;
        try {
          const r = this.validateInputs(sourceId);
          if (!r[0]) valid = false;
        } catch (e) {
          if (!(e instanceof PyException)) throw e;
          valid = false;
          this.validated.set(sourceId, [false, [err('exception_during_inner_validation', 'Exception when validating inner node', e.message,
            orderedObject([['input_name', name], ['input_config', config], ['exception_message', e.message],
              ['exception_type', e.pyType], ['traceback', fakeTraceback('validate_inputs')], ['linked_node', val]]))], sourceId]);
        }
        continue;
      }

      try {
        if (isJsonObject(val) && Object.prototype.hasOwnProperty.call(val, '__value__')) {
          val = val.__value__;
          setKey(inputs, name, val);
        }
        if (spec.type === 'INT') val = pyInt(val);
        else if (spec.type === 'FLOAT') val = pyFloat(val);
        else if (spec.type === 'STRING') val = pyStr(val);
        else if (spec.type === 'BOOLEAN') val = pyTruthy(val);
        if (typeof spec.type === 'string' && ['INT', 'FLOAT', 'STRING', 'BOOLEAN'].includes(spec.type)) setKey(inputs, name, val);
      } catch (e) {
        if (!(e instanceof PyException)) throw e;
        errors.push(err('invalid_input_type', `Failed to convert an input value to a ${pyStr(spec.type)} value`,
          `${name}, ${pyStr(val)}, ${e.message}`,
          orderedObject([['input_name', name], ['input_config', config], ['received_value', val], ['exception_message', e.message]])));
        continue;
      }

      const o = spec.options ?? {};
      if ('min' in o && pyLess(val, o.min)) {
        errors.push(err('value_smaller_than_min', `Value ${pyStr(val)} smaller than min of ${pyStr(o.min)}`, name,
          orderedObject([['input_name', name], ['input_config', config], ['received_value', val]])));
        continue;
      }
      if ('max' in o && pyLess(o.max, val)) {
        errors.push(err('value_bigger_than_max', `Value ${pyStr(val)} bigger than max of ${pyStr(o.max)}`, name,
          orderedObject([['input_name', name], ['input_config', config], ['received_value', val]])));
        continue;
      }
      if (def.inputFile === name) {
        // LoadImage's VALIDATE_INPUTS replaces the combo check: the file must exist in the input folder.
        if (!inputFileExists(this.inputDir, pyStr(val))) {
          errors.push(err('custom_validation_failed', 'Custom validation failed for node', `${name} - Invalid image file: ${pyStr(val)}`,
            orderedObject([['input_name', name]])));
        }
        continue;
      }
      if (Array.isArray(spec.type)) {
        const options = spec.type;
        const v = val;
        if (!options.some((opt) => pyEquals(opt, v))) {
          const big = options.length > 20;
          const listInfo = big ? `(list of length ${options.length})` : pyRepr(options);
          errors.push(err('value_not_in_list', 'Value not in list', `${name}: '${pyStr(val)}' not in ${listInfo}`,
            orderedObject([['input_name', name], ['input_config', big ? null : config], ['received_value', val]])));
          continue;
        }
      }
    }
    const ret: Validated = errors.length > 0 || !valid ? [false, errors, id] : [true, [], id];
    this.validated.set(id, ret);
    return ret;
  }
}

/**
 * Checks class types (first bad node wins), finds output nodes, validates each output's inputs.
 * `partialTargets`: `partial_execution_targets` of the request (undefined when absent).
 */
/** folder_paths.exists_annotated_filepath for the input folder: `sub/name.png`, `name.png [input]`. */
function inputFileExists(inputDir: string | undefined, name: string): boolean {
  if (!inputDir) return false;
  const bare = name.replace(/ \[input\]$/, '');
  const path = resolve(inputDir, bare);
  const rel = relative(inputDir, path);
  if (!rel || rel.startsWith('..') || isAbsolute(rel)) return false;
  return existsSync(path) && statSync(path).isFile();
}

export function validatePrompt(prompt: JsonValue, registry: Map<string, NodeDef>, partialTargets?: JsonValue, inputDir?: string): ValidationResult {
  if (!isJsonObject(prompt)) {
    // `for x in prompt` over an empty list/string finds no outputs; anything else raises.
    if ((Array.isArray(prompt) || typeof prompt === 'string') && prompt.length === 0) {
      return fail(err('prompt_no_outputs', 'Prompt has no outputs', ''));
    }
    throw new PyException('TypeError', `'${pyTypeName(prompt)}' object is not a mapping`);
  }
  const outputs: string[] = [];
  for (const id of keysOf(prompt)) {
    const node = prompt[id];
    const hasClassType = isJsonObject(node)
      ? Object.prototype.hasOwnProperty.call(node, 'class_type')
      : typeof node === 'string' ? node.includes('class_type')
        : Array.isArray(node) ? node.some((x) => x === 'class_type')
          : (() => { throw new PyException('TypeError', `argument of type '${pyTypeName(node)}' is not iterable`); })();
    if (!hasClassType) {
      return fail(err('invalid_prompt', 'Cannot execute because a node is missing the class_type property.', `Node ID '#${id}'`));
    }
    if (!isJsonObject(node)) throw new PyException('TypeError', 'string indices must be integers, not \'str\'');
    const classType = node.class_type;
    if (Array.isArray(classType) || isJsonObject(classType)) {
      throw new PyException('TypeError', `unhashable type: '${pyTypeName(classType)}'`);
    }
    const def = typeof classType === 'string' ? registry.get(classType) : undefined;
    if (!def) {
      return fail(err('invalid_prompt', `Cannot execute because node ${pyStr(classType)} does not exist.`, `Node ID '#${id}'`));
    }
    if (def.outputNode) {
      const selected = partialTargets === undefined || partialTargets === null
        || (Array.isArray(partialTargets) && partialTargets.some((t) => t === id))
        || (typeof partialTargets === 'string' && partialTargets.includes(id));
      if (selected) outputs.push(id);
    }
  }
  if (outputs.length === 0) return fail(err('prompt_no_outputs', 'Prompt has no outputs', ''));

  const v = new Validator(prompt, registry, inputDir);
  const good: string[] = [];
  const failed: Array<[string, Reason[]]> = [];
  const nodeErrors = orderedObject([]);
  for (const o of outputs) {
    let ok: boolean;
    let reasons: Reason[];
    try {
      [ok, reasons] = v.validateInputs(o);
    } catch (e) {
      if (!(e instanceof PyException)) throw e;
      ok = false;
      reasons = [err('exception_during_validation', 'Exception when validating node', e.message,
        orderedObject([['exception_type', e.pyType], ['traceback', fakeTraceback('validate_inputs')]]))];
      v.results.set(o, [false, reasons, o]);
    }
    if (ok) {
      good.push(o);
      continue;
    }
    failed.push([o, reasons]);
    for (const [nodeId, [nodeOk, nodeReasons]] of v.results) {
      if (nodeOk || nodeReasons.length === 0) continue;
      if (!Object.prototype.hasOwnProperty.call(nodeErrors, nodeId)) {
        const node = prompt[nodeId];
        setKey(nodeErrors, nodeId, orderedObject([
          ['errors', nodeReasons],
          ['dependent_outputs', []],
          ['class_type', isJsonObject(node) ? node.class_type : null],
        ]));
      }
      const entry = nodeErrors[nodeId];
      if (isJsonObject(entry) && Array.isArray(entry.dependent_outputs)) entry.dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    const lines: string[] = [];
    for (const [, reasons] of failed) for (const r of reasons) lines.push(`${pyStr(r.message)}: ${pyStr(r.details)}`);
    return { ok: false, error: err('prompt_outputs_failed_validation', 'Prompt outputs failed validation', lines.join('\n')), goodOutputs: [], nodeErrors };
  }
  return { ok: true, error: null, goodOutputs: good, nodeErrors };
}

function fail(error: JsonObject): ValidationResult {
  return { ok: false, error, goodOutputs: [], nodeErrors: {} };
}
