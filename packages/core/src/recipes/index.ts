export { kilnMachineBinding, packmlMachineBinding, type DrivableMachine, type MachineBinding } from "./machine-binding";
export { recoverInterrupted, type RecoverInterruptedOptions, type RecoveryResult } from "./process-recovery";
export {
  RecipeExecutor,
  type ProcessPrincipal,
  type RecipeExecutorOptions,
  type RecipeStartRequest,
  type StartRecipeOptions,
  type TripResult,
} from "./recipe-executor";
export { recipeKey, type PlannedRecipe, type PlannedStep, type RecipePlan } from "./recipe-plan";
export { type ProcessProblem, type ProcessResult, type RecipeProcess, type TimingStats } from "./recipe-process";
export { type SafeStateWrite } from "./safe-state";
export { tableRecipeIo, type RecipeIo, type WriteOrigin } from "./recipe-io";
export {
  CONDITION_OPERATORS,
  RECIPE_STEP_KINDS,
  RESERVED_PARAMETER_NAMES,
  TIMEOUT_ACTIONS,
  checkParameterValue,
  isParameterRef,
  parameterDefinitionSchema,
  parameterRefSchema,
  parseRecipe,
  recipeSchema,
  recipeStepSchema,
  stepKindOf,
  storedRecipeOf,
  type CallStep,
  type ConditionOperator,
  type LoopStep,
  type ParameterDefinition,
  type ParameterRef,
  type ParameterValue,
  type PulseStep,
  type RampStep,
  type Recipe,
  type RecipeCondition,
  type RecipeInput,
  type RecipeNumber,
  type RecipeStep,
  type RecipeStepInput,
  type RecipeStepKind,
  type RecipeValue,
  type SetStep,
  type TimeoutAction,
  type WaitStep,
  type WaitUntilStep,
} from "./recipe-schema";
export {
  DEFAULT_RECIPE_LIMITS,
  recipeResolver,
  validateRecipe,
  type RecipeLimits,
  type RecipeResolver,
  type RecipeValidationOptions,
} from "./recipe-validation";
