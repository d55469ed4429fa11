import { type ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';

/** One entry of validation_failed details: the field (dotted for nested ones) and one message. */
export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * One problem per field, in the order the DTO declares them. The DTO's rules already report one
 * message each; a field checked by several plain class-validator decorators (or rejected as
 * unknown) could still carry several, and then the first written one wins: class-validator lists
 * constraints in reverse order of the source, as decorators apply bottom-up.
 */
export function fieldProblems(errors: ValidationError[], parent = ''): FieldProblem[] {
  return errors.flatMap((e) => {
    const field = parent ? `${parent}.${e.property}` : e.property;
    const constraints = e.constraints ?? {};
    const own: FieldProblem[] = [];
    if (constraints.whitelistValidation) own.push({ field, message: `${field} is not a known field` });
    else {
      const messages = Object.values(constraints);
      if (messages.length) own.push({ field, message: messages[messages.length - 1] });
    }
    return [...own, ...fieldProblems(e.children ?? [], field)];
  });
}

/** The message of a validation_failed error: what is wrong, readable without opening the details. */
export function summarize(problems: FieldProblem[]): string {
  if (!problems.length) return 'The request has invalid fields';
  const shown = problems.slice(0, 3).map((p) => p.message).join('; ');
  return problems.length > 3 ? `${shown}; and ${problems.length - 3} more` : shown;
}

/**
 * A JSON array where a request's body object is due would be checked as an object with the keys
 * 0, 1, … ("0 is not a known field"): it is told as what it is.
 */
class ApiValidationPipe extends ValidationPipe {
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'body' && Array.isArray(value) && metadata.metatype && metadata.metatype !== Array) {
      throw new DomainError(ErrorCode.ValidationFailed, 'The body must be a JSON object', []);
    }
    return super.transform(value, metadata);
  }
}

export function apiValidationPipe(): ValidationPipe {
  return new ApiValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    forbidUnknownValues: true,
    exceptionFactory: (errors) => {
      const problems = fieldProblems(errors);
      return new DomainError(ErrorCode.ValidationFailed, summarize(problems), problems);
    },
  });
}
