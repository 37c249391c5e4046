export { SimulatedClock } from "../memory/simulated-clock";
