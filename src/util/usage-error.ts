/** Wrong command-line use (`offramp …` or its flags); the message says what to type instead. */
export class UsageError extends Error {
  override name = 'UsageError';
}
