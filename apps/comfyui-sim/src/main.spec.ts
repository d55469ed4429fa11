import { parseConfig, parseModelFiles } from './main';

describe('SIM_MODEL_FILES', () => {
  it('reads folder/file lists, grouping by folder', () => {
    expect(parseModelFiles('vae/a.safetensors, loras/b.safetensors,vae/c.safetensors')).toEqual({ vae: ['a.safetensors', 'c.safetensors'], loras: ['b.safetensors'] });
  });

  it('none means no model file at all; unset keeps the default files', () => {
    expect(parseConfig({ SIM_MODEL_FILES: 'none' }, []).models).toEqual({});
    expect(parseConfig({}, []).models).toBeUndefined();
    expect(parseConfig({}, ['--model-files', 'vae/x.safetensors']).models).toEqual({ vae: ['x.safetensors'] });
  });

  it('refuses an entry without a folder or a file', () => {
    expect(() => parseModelFiles('a.safetensors')).toThrow('SIM_MODEL_FILES: expected folder/file, got "a.safetensors"');
    expect(() => parseModelFiles('vae/')).toThrow('expected folder/file');
  });
});
