// qa_logits: run a question-answering model saved from Python, with no Python in the process.
//
//   qa_logits torchscript MODEL.pt  TOKENS.bin LOGITS.bin [REPEATS]  (a traced + frozen TorchScript file)
//   qa_logits aoti        MODEL.pt2 TOKENS.bin LOGITS.bin [REPEATS]  (an AOTInductor package from torch.export)
//
// TOKENS.bin (written by cpu_inference_helpers.deployment.write_token_ids):
//   "QATOKENS" | int64 n_inputs | int64 batch | int64 sequence |
//   n_inputs x ( int64 name_length | name bytes | batch*sequence int64 ids, row-major )
// LOGITS.bin (read by cpu_inference_helpers.deployment.read_logits):
//   "QALOGITS" | int64 n_outputs | int64 batch | int64 sequence |
//   n_outputs x ( int64 name_length | name bytes | batch*sequence float32 values, row-major )
// One line of JSON on stdout says how long loading and the first call took (seconds), for the cold-start
// table, and with REPEATS > 0 the median of that many further calls (the steady state).
#include <torch/script.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Named = std::vector<std::pair<std::string, at::Tensor>>;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t read_int(std::istream& in) {
  int64_t value = 0;
  in.read(reinterpret_cast<char*>(&value), sizeof(value));
  if (!in) throw std::runtime_error("truncated token file");
  return value;
}

void write_int(std::ostream& out, int64_t value) {
  out.write(reinterpret_cast<const char*>(&value), sizeof(value));
}

Named read_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[8];
  in.read(magic, 8);
  if (!in || std::string(magic, 8) != "QATOKENS") throw std::runtime_error(path + " is not a QATOKENS file");
  const int64_t count = read_int(in), batch = read_int(in), sequence = read_int(in);
  Named inputs;
  for (int64_t i = 0; i < count; ++i) {
    std::string name(static_cast<size_t>(read_int(in)), '\0');
    in.read(name.data(), static_cast<std::streamsize>(name.size()));
    at::Tensor ids = torch::empty({batch, sequence}, torch::kInt64);
    in.read(reinterpret_cast<char*>(ids.data_ptr<int64_t>()), static_cast<std::streamsize>(ids.nbytes()));
    if (!in) throw std::runtime_error("truncated token file " + path);
    inputs.emplace_back(name, ids);
  }
  return inputs;
}

void write_logits(const std::string& path, const Named& outputs) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out.write("QALOGITS", 8);
  const at::Tensor& first = outputs.at(0).second;
  write_int(out, static_cast<int64_t>(outputs.size()));
  write_int(out, first.size(0));
  write_int(out, first.size(1));
  for (const auto& [name, tensor] : outputs) {
    at::Tensor values = tensor.to(torch::kFloat32).contiguous();
    write_int(out, static_cast<int64_t>(name.size()));
    out.write(name.data(), static_cast<std::streamsize>(name.size()));
    out.write(reinterpret_cast<const char*>(values.data_ptr<float>()), static_cast<std::streamsize>(values.nbytes()));
  }
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);) parts.push_back(part);
  return parts;
}

at::Tensor find(const Named& inputs, const std::string& name) {
  for (const auto& [key, tensor] : inputs)
    if (key == name) return tensor;
  throw std::runtime_error("the token file has no input named " + name);
}

using Call = std::function<Named()>;

Named torchscript_outputs(const c10::IValue& result) {
  Named outputs;
  if (result.isGenericDict()) {
    for (const auto& item : result.toGenericDict()) outputs.emplace_back(item.key().toStringRef(), item.value().toTensor());
  } else if (result.isTuple()) {
    const auto& elements = result.toTupleRef().elements();
    for (size_t i = 0; i < elements.size(); ++i) outputs.emplace_back("output_" + std::to_string(i), elements[i].toTensor());
  } else {
    outputs.emplace_back("output_0", result.toTensor());
  }
  return outputs;
}

// A traced + frozen graph takes the inputs by name and returns a dict of output tensors (strict=False).
Call load_torchscript(const std::string& model_path, const Named& inputs) {
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(model_path));
  module->eval();
  std::unordered_map<std::string, c10::IValue> kwargs;
  for (const auto& [name, tensor] : inputs) kwargs.emplace(name, tensor);
  return [module, kwargs]() { return torchscript_outputs(module->get_method("forward")({}, kwargs)); };
}

// An AOTInductor package takes the inputs positionally, in the order its metadata names them.
Call load_aoti(const std::string& package_path, const Named& inputs) {
  auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(package_path);
  auto metadata = loader->get_metadata();
  if (!metadata.count("input_names") || !metadata.count("output_names"))
    throw std::runtime_error(package_path + " has no input_names / output_names metadata (not written by export_model)");
  std::vector<at::Tensor> ordered;
  for (const auto& name : split(metadata["input_names"], ',')) ordered.push_back(find(inputs, name));
  const auto names = split(metadata["output_names"], ',');
  return [loader, ordered, names]() {
    std::vector<at::Tensor> results = loader->run(ordered);
    if (names.size() != results.size()) throw std::runtime_error("the package returned an unexpected number of outputs");
    Named outputs;
    for (size_t i = 0; i < results.size(); ++i) outputs.emplace_back(names[i], results[i]);
    return outputs;
  };
}

}  // namespace

int main(int argc, char** argv) {
  const bool known_kind = argc > 1 && (std::string(argv[1]) == "torchscript" || std::string(argv[1]) == "aoti");
  if ((argc != 5 && argc != 6) || !known_kind) {
    std::cerr << "usage: " << argv[0] << " torchscript|aoti MODEL TOKENS.bin LOGITS.bin [REPEATS]\n";
    return 2;
  }
  const auto process_start = Clock::now();
  try {
    const int repeats = argc == 6 ? std::stoi(argv[5]) : 0;
    const Named inputs = read_tokens(argv[3]);
    torch::NoGradGuard no_grad;
    auto start = Clock::now();
    const Call call = std::string(argv[1]) == "torchscript" ? load_torchscript(argv[2], inputs) : load_aoti(argv[2], inputs);
    const double load_s = seconds_since(start);
    start = Clock::now();
    const Named outputs = call();
    const double call_s = seconds_since(start);
    write_logits(argv[4], outputs);
    const double main_s = seconds_since(process_start);
    std::vector<double> steady;
    for (int i = 0; i < repeats; ++i) {
      start = Clock::now();
      call();
      steady.push_back(seconds_since(start));
    }
    std::sort(steady.begin(), steady.end());
    const double median = steady.empty() ? 0.0 : steady[steady.size() / 2];
    std::cout << "{\"load_s\": " << load_s << ", \"first_call_s\": " << call_s << ", \"main_s\": " << main_s
              << ", \"steady_median_s\": " << median << ", \"repeats\": " << repeats << "}" << std::endl;
  } catch (const std::exception& error) {
    std::cerr << "qa_logits: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
