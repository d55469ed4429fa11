// This browser's jobs, newest first, in localStorage: they survive a reload and re-open by id.

const HISTORY_STORAGE = 'fictures.playground.history';
const MAX_ENTRIES = 50;

export function readHistory() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY_STORAGE) ?? '[]');
    return Array.isArray(list) ? list.filter((e) => e && typeof e.id === 'string') : [];
  } catch {
    return [];
  }
}

function write(list) {
  try {
    localStorage.setItem(HISTORY_STORAGE, JSON.stringify(list.slice(0, MAX_ENTRIES)));
  } catch {
    // Storage full or disabled: the history is a convenience, the job itself lives on the server.
  }
}

/** Adds or updates a job (by id) from its resource; a known job keeps its place. */
export function remember(job) {
  const list = readHistory();
  const entry = {
    id: job.id,
    prompt: job.params?.prompt ?? '',
    model: job.model ?? job.params?.model ?? '',
    status: job.status,
    created_at: job.created_at,
  };
  const i = list.findIndex((e) => e.id === job.id);
  if (i >= 0) list[i] = { ...list[i], ...entry };
  else list.unshift(entry);
  write(list);
}

export function forget(id) {
  write(readHistory().filter((e) => e.id !== id));
}

export function clearHistory() {
  write([]);
}
