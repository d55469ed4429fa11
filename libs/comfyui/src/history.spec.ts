import { ExecutionError, PromptInterruptedError } from './comfyui.errors';
import { errorFromEntry, isFailedEntry, outcomeFromEntry, parseHistoryEntry, parseNodeErrors, parseQueue } from './history';

const ID = 'f017711a-3b20-4606-8ac4-99a51f46db72';

describe('history parsing', () => {
  it('reads the captured ComfyUI 0.3.64 entry (Appendix A.1)', () => {
    const body = {
      [ID]: {
        prompt: [0, ID, {}, { client_id: 'x' }, ['2']],
        outputs: { '2': { images: [{ filename: 'probe_00001_.png', subfolder: '', type: 'output' }] } },
        status: {
          status_str: 'success',
          completed: true,
          messages: [
            ['execution_start', { prompt_id: ID, timestamp: 1795670303979 }],
            ['execution_cached', { nodes: [], prompt_id: ID, timestamp: 1795670303980 }],
            ['execution_success', { prompt_id: ID, timestamp: 1795670304006 }],
          ],
        },
        meta: {},
      },
    };
    const entry = parseHistoryEntry(body, ID)!;
    expect(isFailedEntry(entry)).toBe(false);
    expect(outcomeFromEntry(ID, entry)).toEqual({ promptId: ID, images: [{ node: '2', filename: 'probe_00001_.png', subfolder: '', type: 'output' }], executionMs: 27, endedAt: 1795670304006 });
  });

  it('treats {} and foreign shapes as "no entry"', () => {
    expect(parseHistoryEntry({}, ID)).toBeUndefined();
    expect(parseHistoryEntry('<html>', ID)).toBeUndefined();
    expect(parseHistoryEntry({ other: {} }, ID)).toBeUndefined();
  });

  it('skips temp previews and malformed images, tolerates unknown output keys', () => {
    const entry = parseHistoryEntry(
      {
        [ID]: {
          outputs: {
            '9': { images: [{ filename: 'a.png', subfolder: 's', type: 'output', metadata: {} }, { filename: 'p.png', type: 'temp' }, { nope: 1 }, 'x'] },
            '10': { text: ['hello'] },
            '11': null,
          },
          status: { status_str: 'success', completed: true, messages: 'garbage' },
        },
      },
      ID,
    )!;
    expect(outcomeFromEntry(ID, entry)).toEqual({ promptId: ID, images: [{ node: '9', filename: 'a.png', subfolder: 's', type: 'output' }] });
  });

  it('maps error entries to the same errors as the live events', () => {
    const err = parseHistoryEntry(
      {
        [ID]: {
          outputs: {},
          status: {
            status_str: 'error',
            completed: false,
            messages: [['execution_error', { node_id: '37', node_type: 'UNETLoader', exception_type: 'safetensors_rust.SafetensorError', exception_message: 'bad header\n', traceback: ['a'] }]],
          },
        },
      },
      ID,
    )!;
    expect(isFailedEntry(err)).toBe(true);
    expect(errorFromEntry(ID, err)).toEqual(expect.any(ExecutionError));
    expect(errorFromEntry(ID, err)).toMatchObject({ nodeId: '37', nodeType: 'UNETLoader', exceptionMessage: 'bad header\n', traceback: ['a'] });
    const intr = parseHistoryEntry({ [ID]: { status: { status_str: 'error', messages: [['execution_interrupted', { node_id: '12' }]] } } }, ID)!;
    expect(errorFromEntry(ID, intr)).toEqual(expect.any(PromptInterruptedError));
  });

  it('reads queue tuples and rejects bodies that are not a queue', () => {
    const q = parseQueue({ queue_running: [[1, 'a', {}, {}, []]], queue_pending: [[3, 'c', {}, {}, []], [2, 'b'], 'junk'] })!;
    expect([...q.running]).toEqual(['a']);
    expect([...q.pending]).toEqual(['c', 'b']);
    expect(parseQueue({ error: 'x' })).toBeUndefined();
    expect(parseQueue(null)).toBeUndefined();
  });

  it('keeps node_errors structured and drops what has no shape', () => {
    expect(parseNodeErrors({ '3': { errors: [{ type: 't', message: 'm', details: 'd', extra_info: { a: 1 } }], dependent_outputs: ['9'], class_type: 'KSampler' }, '4': 'x' })).toEqual({
      '3': { errors: [{ type: 't', message: 'm', details: 'd', extra_info: { a: 1 } }], dependent_outputs: ['9'], class_type: 'KSampler' },
    });
    expect(parseNodeErrors(undefined)).toEqual({});
  });
});
